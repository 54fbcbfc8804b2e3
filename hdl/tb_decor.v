// Self-checking testbench for the exported decorrelation unit (module `decor_unit`, element-stream ports).
//
// Plain Verilog-2005: runs in Icarus Verilog 11 (iverilog -g2005) and Verilator 5 (--binary, which implies
// --timing for the clock below). Written by `analogdecorr hdl export` next to decor_unit.v and the vector files;
// `analogdecorr hdl verify DIR` compiles and runs it with the parameters from manifest.json. Run it from the
// export directory: the vector files are opened by relative name.
//
// Vector files ($readmemh, one word per line, two's complement):
//   x.hex      N*D input elements, element j of sample t on line t*D + j        (W bits)
//   learn.hex  N learn bits, one per sample                                     (1 bit)
//   z.hex      N*D expected z elements, same order as x.hex                     (W bits)
//   r0.hex     R at the start of the stream, D*D words, index i*D + j          (WR bits)
//   r_final.hex R after the last sample                                         (WR bits)
//   r_check.hex R at the NSEG-1 interior checkpoints, D*D words each            (WR bits)
//   bounds.hex the NSEG+1 checkpoint sample indices 0 = b_0 < b_1 < ... < b_NSEG = N   (32 bits)
//   ovf_check.hex the sticky overflow flag each checkpoint segment raises on its own (NSEG lines)
//   overflow.hex the flag after the whole stream
//
// Sequence of one run (checkpoint segments [C0, C1), plusargs +c0= +c1=, default the whole stream):
//   1. rst for 4 cycles, wait for busy = 0 (the init sweep); status must be clear (overflow, frame_error,
//      counters) and R, read back before anything is loaded, must be the identity (reset restores R = I).
//   2. load checkpoint C0's R through the R write port (one word per cycle; retried while busy).
//   3. stream samples b_C0 .. b_C1 - 1 element by element (x payload = data, last, learn) and check every z
//      element and its last bit. At each interior checkpoint the stream pauses: after the last z and busy = 0,
//      R is read back and compared, and the overflow flag and the sample / learned counters are checked.
//   4. at the end the same checks against checkpoint C1 (and frame_error = 0); a clear_overflow pulse must
//      clear the flag and keep the counters.
//   5. a ctl reset pulse must restore R = I and clear the status (read back and checked again).
//   6. a frame whose `last` comes one element early must raise frame_error (FRAME_CHECK = 1).
// A part that starts at C0 > 0 (parallel simulation of segments) needs R to be the unit's only state; the
// export allows that only for formats without centring and without stochastic rounding.
//
// The first CALM samples run with x valid and z ready held high (to measure latency and cycles per sample);
// after that x gets random valid gaps and z random ready stalls from a deterministic xorshift generator.
//
// Output lines (machine-parsable, key=value):
//   MISMATCH kind=<k> sample=<s> word=<i> expected=<e> got=<g>   (the first MAXREPORT mismatches)
//     k: z, zlast (z element / its last bit), r (readback at a checkpoint; sample = its position), r_reset
//     (after rst), r_cmd_reset (after the ctl reset pulse), ovf, frame_error, samples, learned (status and
//     counters), extra_z, r_rvalid (no read data), init (busy never dropped), frame (no frame_error after a bad
//     frame)
//   TIMING latency=<cycles from sample 0's last x element to z valid> calm_span=<cycles> calm_count=<samples> calm_learn=<learning samples in the span>
//          stream_cycles=<cycles>
//   RESULT bit_exact=<0|1> start=<sample> samples=<n> ... (see the $display at the end)
`timescale 1ns / 1ps
// The control block below deliberately mixes blocking bookkeeping with non-blocking DUT drives, and
// sign-extends narrow words into task arguments.
/* verilator lint_off BLKSEQ */
/* verilator lint_off WIDTH */
/* verilator lint_off UNUSEDSIGNAL */

module tb_decor;
    parameter D = 8;              // vector length
    parameter W = 16;             // data word width
    parameter WR = 28;            // R master word width
    parameter FR = 20;            // R fraction bits (the identity's diagonal is 2^FR)
    parameter AW = 6;             // R port address width
    parameter XPW = 18;           // x payload width (data, last, learn)
    parameter ZPW = 17;           // z payload width (data, last)
    parameter XLAST = 16;         // bit of `last` in the x payload
    parameter XLEARN = 17;        // bit of `learn` in the x payload
    parameter ZLAST = 16;         // bit of `last` in the z payload
    parameter CW = 32;            // counter width (samples, learned)
    parameter N = 16;             // samples in the vector files
    parameter NSEG = 1;           // checkpoint segments (bounds.hex has NSEG+1 lines)
    parameter CALM = 16;          // leading samples without gaps or stalls
    parameter FRAME_CHECK = 1;    // 1: end with a bad frame that must raise frame_error
    parameter SEED = 32'h1234567; // xorshift seed (non-zero)
    parameter GAP = 64;           // x valid gap probability, out of 256
    parameter STALL = 80;         // z ready stall probability, out of 256
    parameter MAXCYCLES = 100000000;
    parameter MAXWAIT = 1000000;  // cycles to wait for busy = 0 (init sweep) or a drain
    parameter RWAIT = 64;         // cycles to wait for a read's rvalid before calling it lost
    parameter MAXREPORT = 8;

    localparam DD = D * D;
    localparam NE = N * D;

    reg clk = 1'b0;
    always #5 clk = ~clk;

    // DUT inputs (driven with non-blocking assignments at the rising edge, like a synchronous master)
    reg rst = 1'b1;
    reg [XPW-1:0] x_payload = {XPW{1'b0}};
    reg x_valid = 1'b0;
    reg z_ready = 1'b0;
    reg [AW-1:0] r_addr = {AW{1'b0}};
    reg r_we = 1'b0;
    reg [WR-1:0] r_wdata = {WR{1'b0}};
    reg r_re = 1'b0;
    reg ctl_reset = 1'b0;
    reg clear_overflow = 1'b0;

    // DUT outputs
    wire x_ready;
    wire [ZPW-1:0] z_payload;
    wire z_valid;
    wire [WR-1:0] r_rdata;
    wire r_rvalid;
    wire busy;
    wire overflow;
    wire frame_error;
    wire [CW-1:0] cnt_samples;
    wire [CW-1:0] cnt_learned;

    decor_unit dut (
        .clk(clk), .rst(rst),
        .x__payload(x_payload), .x__valid(x_valid), .x__ready(x_ready),
        .z__payload(z_payload), .z__valid(z_valid), .z__ready(z_ready),
        .ctl__r__addr(r_addr), .ctl__r__we(r_we), .ctl__r__wdata(r_wdata), .ctl__r__re(r_re),
        .ctl__r__rdata(r_rdata), .ctl__r__rvalid(r_rvalid),
        .ctl__reset(ctl_reset), .ctl__clear_overflow(clear_overflow),
        .ctl__busy(busy), .ctl__overflow(overflow), .ctl__frame_error(frame_error),
        .ctl__samples(cnt_samples), .ctl__learned(cnt_learned)
    );

    // Vectors
    reg [W-1:0] xmem [0:NE-1];
    reg [W-1:0] zmem [0:NE-1];
    reg [0:0] lmem [0:N-1];
    reg [WR-1:0] r0mem [0:DD-1];
    reg [WR-1:0] rmem [0:DD-1];
    reg [WR-1:0] chkmem [0:(NSEG > 1 ? NSEG - 1 : 1) * DD - 1];
    reg [31:0] bmem [0:NSEG];
    reg [3:0] ovfmem [0:0];
    reg [3:0] ovfchk [0:NSEG-1];

    // The part of the stream to run (plusargs, see the header)
    integer C0 = 0;               // first checkpoint segment to run
    integer C1 = NSEG;            // one past the last checkpoint segment to run
    integer START = 0;            // first sample of the part (b_C0)
    integer LEN = N;              // samples in the part (b_C1 - b_C0)

    initial begin
        if (!$value$plusargs("c0=%d", C0)) C0 = 0;
        if (!$value$plusargs("c1=%d", C1)) C1 = NSEG;
        $readmemh("x.hex", xmem);
        $readmemh("z.hex", zmem);
        $readmemh("learn.hex", lmem);
        $readmemh("r0.hex", r0mem);
        $readmemh("r_final.hex", rmem);
        $readmemh("bounds.hex", bmem);
        $readmemh("overflow.hex", ovfmem);
        $readmemh("ovf_check.hex", ovfchk);
        if (NSEG > 1) $readmemh("r_check.hex", chkmem);
        START = bmem[C0];
        LEN = bmem[C1] - bmem[C0];
    end

    // R at checkpoint c (0: r0.hex, NSEG: r_final.hex, else r_check.hex); the identity
    function [WR-1:0] r_at;
        input integer c;
        input integer idx;
        begin
            if (c == 0) r_at = r0mem[idx];
            else if (c == NSEG) r_at = rmem[idx];
            else r_at = chkmem[(c - 1) * DD + idx];
        end
    endfunction
    function [WR-1:0] r_identity;
        input integer idx;
        r_identity = (idx / D == idx % D) ? ({{(WR - 1){1'b0}}, 1'b1} << FR) : {WR{1'b0}};
    endfunction
    // the sticky flag expected at checkpoint c of a part that started (from reset) at checkpoint C0
    function ovf_at;
        input integer c;
        integer s;
        begin
            if (C0 == 0 && c == NSEG) begin
                ovf_at = ovfmem[0] != 0;
            end else begin
                ovf_at = 1'b0;
                for (s = C0; s < c; s = s + 1) ovf_at = ovf_at | (ovfchk[s] != 0);
            end
        end
    endfunction

    // Deterministic pseudo-random source (xorshift32)
    reg [31:0] rng = SEED;
    function [31:0] xorshift;
        input [31:0] s;
        reg [31:0] t;
        begin
            t = s ^ (s << 13);
            t = t ^ (t >> 17);
            xorshift = t ^ (t << 5);
        end
    endfunction

    // Bookkeeping (blocking, private to the single control block below)
    localparam S_RESET = 0, S_INIT = 1, S_LOAD = 2, S_STREAM = 3, S_PAUSE = 4, S_READ = 5,
               S_STATUS = 7, S_CLEAR = 8, S_CMD = 9, S_FRAME = 10, S_FRAME_WAIT = 11, S_DONE = 12;
    // what a readback compares against, and what comes after it
    localparam RB_RESET = 0, RB_CHECK = 1, RB_CMD = 2;
    integer state = S_RESET;
    integer cycle = 0;
    integer rst_count = 0;
    integer wait_count = 0;
    integer drain_count = 0;
    integer xe = 0;              // x elements transferred in this part
    integer ze = 0;              // z elements checked in this part
    integer learned_sent = 0;    // learning samples sent in this part
    integer nc = 0;              // next checkpoint to pause at
    integer pause_at = 0;        // x element index (in this part) of the next pause
    integer rb_kind = RB_RESET;  // the current readback
    integer rb_c = 0;            // its checkpoint
    integer k = 0;               // R word index (load / readback commands)
    integer kr = 0;              // R words read back
    integer i;
    integer s_pos = 0;           // sample position reported with readback / status mismatches
    integer mismatches = 0;
    integer r_checked = 0;
    integer r_expected = 0;
    integer status_checked = 0;
    integer readbacks = 0;
    integer frame_result = -1;   // 1: frame_error raised by a bad frame, 0: not raised, -1: not checked
    integer first_sample = -1;
    integer first_word = -1;
    reg [16*8-1:0] first_kind = "none";
    reg signed [WR-1:0] first_expected = 0;
    reg signed [WR-1:0] first_got = 0;
    integer t_x0 = -1;           // cycle of the first x transfer
    integer t_xl = -1;           // cycle of the transfer of sample 0's last element
    integer t_z0 = -1;           // cycle at which the first z is valid
    integer t_calm_a = -1;       // cycle of the transfer of sample CALM/2's element 0
    integer t_calm_b = -1;       // cycle of the transfer of sample CALM-1's element 0
    integer calm_learn = 0;      // learning samples among CALM/2 .. CALM-2
    integer t_stream_end = -1;
    integer ovf_expected = 0;
    integer ovf_got = 0;
    integer timeout = 0;
    integer fe_sent = 0;         // elements of the bad frame sent
    reg signed [W-1:0] ew, gw;
    reg signed [WR-1:0] er, gr;
    reg x_fire, z_fire, calm, lbit;
    integer sample, elem;

    task note_mismatch;
        input [16*8-1:0] kind;
        input integer smp;
        input integer word;
        input [WR-1:0] expected;
        input [WR-1:0] got;
        begin
            if (mismatches < MAXREPORT)
                $display("MISMATCH kind=%0s sample=%0d word=%0d expected=%0d got=%0d",
                         kind, smp, word, $signed(expected), $signed(got));
            if (mismatches == 0) begin
                first_kind = kind;
                first_sample = smp;
                first_word = word;
                first_expected = expected;
                first_got = got;
            end
            mismatches = mismatches + 1;
        end
    endtask

    // overflow flag, frame_error and the two counters against their expected values
    task check_status;
        input integer smp;
        input integer e_ovf;
        input integer e_frame;
        input integer e_samples;
        input integer e_learned;
        begin
            if ((overflow != 0) != (e_ovf != 0)) note_mismatch("ovf", smp, -1, e_ovf, overflow);
            if ((frame_error != 0) != (e_frame != 0)) note_mismatch("frame_error", smp, -1, e_frame, frame_error);
            if (cnt_samples != e_samples) note_mismatch("samples", smp, -1, e_samples, cnt_samples);
            if (cnt_learned != e_learned) note_mismatch("learned", smp, -1, e_learned, cnt_learned);
            status_checked = status_checked + 1;
        end
    endtask

    // start reading R back; the comparison and the state after it follow from rb_kind / rb_c
    task start_readback;
        input integer kind;
        input integer c;
        input integer smp;
        begin
            rb_kind = kind;
            rb_c = c;
            s_pos = smp;
            k = 0;
            kr = 0;
            wait_count = 0;
            readbacks = readbacks + 1;
            r_expected = r_expected + DD;
            state = S_READ;
        end
    endtask

    always @(posedge clk) begin
        cycle = cycle + 1;
        if (cycle > MAXCYCLES && state != S_DONE) begin
            timeout = 1;
            state = S_DONE;
        end
        case (state)
            S_RESET: begin
                rst_count = rst_count + 1;
                if (rst_count == 4) rst <= 1'b0;
                if (rst_count == 6) begin
                    state = S_INIT;
                    wait_count = 0;
                end
            end
            S_INIT: begin
                // the init sweep after rst (or a ctl reset pulse): wait for busy = 0
                wait_count = wait_count + 1;
                if (!busy && wait_count > 2) begin
                    check_status(-1, 0, 0, 0, 0);
                    start_readback(RB_RESET, -1, -1);
                end else if (wait_count > MAXWAIT) begin
                    note_mismatch("init", -1, -1, 0, 1);
                    state = S_DONE;
                end
            end
            S_LOAD: begin
                // one R word per cycle through the write port; a command the unit did not take (busy = 1 at the
                // edge that sampled it) is driven again
                if (r_we && !busy) k = k + 1;
                if (k < DD) begin
                    r_we <= 1'b1;
                    r_addr <= k;
                    r_wdata <= r_at(C0, k);
                end else begin
                    r_we <= 1'b0;
                    nc = C0 + 1;
                    pause_at = (nc < C1) ? (bmem[nc] - START) * D : LEN * D;
                    state = S_STREAM;
                end
            end
            S_STREAM, S_PAUSE: begin
                // handshakes complete at this edge with the values driven before it
                x_fire = x_valid && x_ready;
                z_fire = z_valid && z_ready;
                if (z_valid && t_z0 < 0) t_z0 = cycle;
                if (x_fire) begin
                    if (xe == 0) t_x0 = cycle;
                    if (xe == D - 1) t_xl = cycle;
                    if (xe == (CALM / 2) * D) t_calm_a = cycle;
                    if (xe == (CALM - 1) * D) t_calm_b = cycle;
                    xe = xe + 1;
                end
                if (z_fire) begin
                    if (ze >= LEN * D) begin
                        note_mismatch("extra_z", START + ze / D, ze % D, 0, 0);
                    end else begin
                        ew = zmem[START * D + ze];
                        gw = z_payload[W-1:0];
                        if (ew !== gw) note_mismatch("z", START + ze / D, ze % D, ew, gw);
                        if (z_payload[ZLAST] !== (ze % D == D - 1))
                            note_mismatch("zlast", START + ze / D, ze % D, ze % D == D - 1, z_payload[ZLAST]);
                    end
                    ze = ze + 1;
                end
                calm = (xe < CALM * D);
                rng = xorshift(rng);
                // x: hold valid and payload until accepted; stop at the next pause; otherwise maybe a gap
                if (!x_valid || x_fire) begin
                    if (xe < pause_at && (calm || rng[7:0] >= GAP)) begin
                        sample = START + xe / D;
                        elem = xe % D;
                        lbit = lmem[sample];
                        x_valid <= 1'b1;
                        x_payload <= {XPW{1'b0}}
                                     | ({{(XPW - W){1'b0}}, xmem[START * D + xe]})
                                     | ({{(XPW - 1){1'b0}}, elem == D - 1} << XLAST)
                                     | ({{(XPW - 1){1'b0}}, lbit} << XLEARN);
                        if (elem == 0 && lbit) learned_sent = learned_sent + 1;
                        if (elem == 0 && lbit && xe / D >= CALM / 2 && xe / D < CALM - 1)
                            calm_learn = calm_learn + 1;
                    end else begin
                        x_valid <= 1'b0;
                    end
                end
                z_ready <= (ze < CALM * D) || (rng[15:8] >= STALL);
                if (state == S_STREAM && xe == pause_at && ze == pause_at) begin
                    state = S_PAUSE;
                    drain_count = 0;
                    if (pause_at == LEN * D) t_stream_end = cycle;
                end
                if (state == S_PAUSE) begin
                    // let the last update finish; watch for unexpected extra z words meanwhile
                    drain_count = drain_count + 1;
                    if (!busy && drain_count > 4) begin
                        z_ready <= 1'b0;
                        start_readback(RB_CHECK, (pause_at == LEN * D) ? C1 : nc, START + pause_at / D);
                    end else if (drain_count > MAXWAIT) begin
                        note_mismatch("init", START + pause_at / D, -1, 0, 1);
                        state = S_DONE;
                    end
                end
            end
            S_READ: begin
                // pipelined readback: a read command per cycle (again if the unit was busy when it sampled it);
                // the words return with rvalid in command order, r_read_latency cycles later
                if (r_rvalid && kr < DD) begin
                    er = (rb_kind == RB_CHECK) ? r_at(rb_c, kr) : r_identity(kr);
                    gr = r_rdata;
                    if (er !== gr) begin
                        if (rb_kind == RB_RESET) note_mismatch("r_reset", s_pos, kr, er, gr);
                        else if (rb_kind == RB_CMD) note_mismatch("r_cmd_reset", s_pos, kr, er, gr);
                        else note_mismatch("r", s_pos, kr, er, gr);
                    end
                    r_checked = r_checked + 1;
                    kr = kr + 1;
                    wait_count = 0;
                end
                if (r_re && !busy) k = k + 1;
                if (r_re && busy) wait_count = 0;
                if (k < DD) begin
                    r_re <= 1'b1;
                    r_addr <= k;
                end else begin
                    r_re <= 1'b0;
                end
                wait_count = wait_count + 1;
                if (kr == DD) begin
                    state = S_STATUS;
                end else if (wait_count > RWAIT) begin
                    note_mismatch("r_rvalid", s_pos, kr, 1, 0);
                    r_re <= 1'b0;
                    state = S_STATUS;
                end
            end
            S_STATUS: begin
                // after a readback: what follows
                if (rb_kind == RB_RESET) begin
                    k = 0;
                    state = S_LOAD;
                end else if (rb_kind == RB_CMD) begin
                    state = FRAME_CHECK ? S_FRAME : S_DONE;
                    fe_sent = 0;
                    wait_count = 0;
                end else if (rb_c == C1) begin
                    // the end of the part: overflow, counters, no frame error; then the ctl reset command
                    ovf_expected = ovf_at(C1);
                    ovf_got = overflow;
                    check_status(START + LEN, ovf_expected, 0, LEN, learned_sent);
                    clear_overflow <= 1'b1;
                    state = S_CLEAR;
                    wait_count = 0;
                end else begin
                    check_status(START + pause_at / D, ovf_at(rb_c), 0, pause_at / D, learned_sent);
                    nc = nc + 1;
                    pause_at = (nc < C1) ? (bmem[nc] - START) * D : LEN * D;
                    state = S_STREAM;
                end
            end
            S_CLEAR: begin
                // clear_overflow pulse (one cycle): the flag must drop, the counters stay
                clear_overflow <= 1'b0;
                wait_count = wait_count + 1;
                if (wait_count == 4) begin
                    check_status(START + LEN, 0, 0, LEN, learned_sent);
                    ctl_reset <= 1'b1;
                    state = S_CMD;
                    wait_count = 0;
                end
            end
            S_CMD: begin
                // ctl reset pulse (one cycle), then the init sweep; R must be the identity again
                ctl_reset <= 1'b0;
                wait_count = wait_count + 1;
                if (!busy && wait_count > 2) begin
                    check_status(START + LEN, 0, 0, 0, 0);
                    start_readback(RB_CMD, -1, START + LEN);
                end else if (wait_count > MAXWAIT) begin
                    note_mismatch("init", START + LEN, -1, 0, 1);
                    state = S_DONE;
                end
            end
            S_FRAME: begin
                // a frame of D-1 elements whose last element carries `last`: the unit counts D, so frame_error
                z_ready <= 1'b1;
                wait_count = wait_count + 1;
                if (x_valid && x_ready) fe_sent = fe_sent + 1;
                if (fe_sent < D - 1 && wait_count < 64 * D) begin
                    x_valid <= 1'b1;
                    x_payload <= {{(XPW - 1){1'b0}}, fe_sent == D - 2} << XLAST;
                end else begin
                    x_valid <= 1'b0;
                    state = S_FRAME_WAIT;
                    wait_count = 0;
                end
            end
            S_FRAME_WAIT: begin
                wait_count = wait_count + 1;
                if (frame_error) begin
                    frame_result = 1;
                    state = S_DONE;
                end else if (wait_count > 64) begin
                    frame_result = 0;
                    note_mismatch("frame", START + LEN, -1, 1, 0);
                    state = S_DONE;
                end
            end
            default: ;
        endcase
        if (state == S_DONE) begin
            $display("TIMING latency=%0d calm_span=%0d calm_count=%0d calm_learn=%0d stream_cycles=%0d",
                     (t_z0 >= 0 && t_xl >= 0) ? t_z0 - t_xl : -1,
                     (t_calm_b >= 0 && t_calm_a >= 0) ? t_calm_b - t_calm_a : -1,
                     (CALM - 1) - (CALM / 2), calm_learn,
                     (t_stream_end >= 0 && t_x0 >= 0) ? t_stream_end - t_x0 : -1);
            $display("RESULT bit_exact=%0d start=%0d samples=%0d z_checked=%0d r_checked=%0d r_expected=%0d readbacks=%0d status_checked=%0d frame=%0d mismatches=%0d timeout=%0d cycles=%0d overflow_expected=%0d overflow_got=%0d first_mismatch=%0d first_kind=%0s first_word=%0d first_expected=%0d first_got=%0d",
                     (mismatches == 0 && timeout == 0 && ze == LEN * D && r_checked == r_expected
                      && readbacks == C1 - C0 + 2) ? 1 : 0,
                     START, LEN, ze / D, r_checked, r_expected, readbacks, status_checked, frame_result,
                     mismatches, timeout, cycle, ovf_expected, ovf_got,
                     first_sample, first_kind, first_word, first_expected, first_got);
            $finish;
        end
    end
endmodule
