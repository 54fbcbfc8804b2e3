// Self-checking testbench for the exported decorrelation unit (module `decor_unit`).
//
// Plain Verilog-2005: runs in Icarus Verilog 11 (iverilog -g2005) and Verilator 5 (--binary, which implies
// --timing for the clock below). Written by `analogdecorr hdl export` next to decor_unit.v and the vector files;
// `analogdecorr hdl verify DIR` compiles and runs it with the parameters from manifest.json. Run it from the
// export directory: the vector files are opened by relative name.
//
// Sequence: reset; load R0 (r0.hex) through the R write port; stream N input vectors (x.hex) while checking every
// z word against z.hex; wait for busy = 0; read R back through the R read port and check every word against
// r_final.hex; check the sticky overflow flag against overflow.hex; print one RESULT line and $finish.
//
// Segments: for formats whose only state between samples is R (no stochastic rounding, no delayed update), the
// export also writes the model's R at NSEG-1 interior checkpoints (r_check.hex, DD words each) and the overflow
// flag of each of the NSEG checkpoint segments (ovf_check.hex). Plusargs +c0=C0 +c1=C1 +start=START +len=LEN
// select checkpoint segments [C0, C1): samples START .. START+LEN-1 run from checkpoint C0's R (loaded through the
// port) and must end at checkpoint C1's R, so independent simulator processes can cover the stream in parallel.
// Without plusargs (C0 = 0, C1 = NSEG, START = 0, LEN = N) the whole stream runs in one go.
//
// The first CALM samples run with x valid and z ready held high (to measure latency and cycles per sample);
// after that x gets random valid gaps and z random ready stalls from a deterministic xorshift generator.
//
// Output lines (machine-parsable, key=value):
//   MISMATCH kind=<z|r|ovf|extra_z|r_rvalid> sample=<s> word=<i> expected=<e> got=<g>   (the first MAXREPORT mismatches)
//   TIMING latency=<cycles> calm_span=<cycles> calm_count=<transfers>
//   RESULT bit_exact=<0|1> samples=<n> first_mismatch=<sample or -1> ... (see the $display at the end)
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
    parameter AW = 6;             // r_addr width
    parameter N = 16;             // number of samples in x.hex / z.hex
    parameter NSEG = 1;           // checkpoint segments in the export (ovf_check.hex has NSEG lines)
    parameter CALM = 16;          // leading samples without gaps or stalls
    parameter SEED = 32'h1234567; // xorshift seed (non-zero)
    parameter GAP = 64;           // x valid gap probability, out of 256
    parameter STALL = 80;         // z ready stall probability, out of 256
    parameter MAXCYCLES = 100000000;
    parameter MAXREPORT = 8;

    localparam DD = D * D;
    localparam VW = D * W;

    reg clk = 1'b0;
    always #5 clk = ~clk;

    // DUT inputs (driven with non-blocking assignments at the rising edge, like a synchronous master)
    reg rst = 1'b1;
    reg [VW-1:0] x_payload = {VW{1'b0}};
    reg x_valid = 1'b0;
    reg z_ready = 1'b0;
    reg learn = 1'b1;
    reg [AW-1:0] r_addr = {AW{1'b0}};
    reg r_we = 1'b0;
    reg [WR-1:0] r_wdata = {WR{1'b0}};
    reg r_re = 1'b0;
    reg clear_overflow = 1'b0;

    // DUT outputs
    wire x_ready;
    wire [VW-1:0] z_payload;
    wire z_valid;
    wire [WR-1:0] r_rdata;
    wire r_rvalid;
    wire busy;
    wire overflow;

    decor_unit dut (
        .clk(clk), .rst(rst),
        .x__payload(x_payload), .x__valid(x_valid), .x__ready(x_ready),
        .z__payload(z_payload), .z__valid(z_valid), .z__ready(z_ready),
        .learn(learn),
        .r_addr(r_addr), .r_we(r_we), .r_wdata(r_wdata), .r_re(r_re),
        .r_rdata(r_rdata), .r_rvalid(r_rvalid),
        .busy(busy), .overflow(overflow), .clear_overflow(clear_overflow)
    );

    // Vectors
    reg [VW-1:0] xmem [0:N-1];
    reg [VW-1:0] zmem [0:N-1];
    reg [WR-1:0] r0mem [0:DD-1];
    reg [WR-1:0] rmem [0:DD-1];
    reg [3:0] ovfmem [0:0];
    reg [WR-1:0] chkmem [0:(NSEG > 1 ? NSEG - 1 : 1) * DD - 1];
    reg [3:0] ovfchk [0:NSEG-1];

    // The part of the stream to run (plusargs, see the header)
    integer C0 = 0;               // first checkpoint segment to run
    integer C1 = NSEG;            // one past the last checkpoint segment to run
    integer START = 0;            // first sample of segment C0
    integer LEN = N;              // samples in segments [C0, C1)

    initial begin
        if (!$value$plusargs("c0=%d", C0)) C0 = 0;
        if (!$value$plusargs("c1=%d", C1)) C1 = NSEG;
        if (!$value$plusargs("start=%d", START)) START = 0;
        if (!$value$plusargs("len=%d", LEN)) LEN = N;
        $readmemh("x.hex", xmem);
        $readmemh("z.hex", zmem);
        $readmemh("r0.hex", r0mem);
        $readmemh("r_final.hex", rmem);
        $readmemh("overflow.hex", ovfmem);
        $readmemh("ovf_check.hex", ovfchk);
        if (NSEG > 1) $readmemh("r_check.hex", chkmem);
    end

    // R at the start and at the end of the run, and the overflow flag expected at the end
    function [WR-1:0] r_start;
        input integer idx;
        r_start = (C0 == 0) ? r0mem[idx] : chkmem[(C0 - 1) * DD + idx];
    endfunction
    function [WR-1:0] r_end;
        input integer idx;
        r_end = (C1 == NSEG) ? rmem[idx] : chkmem[(C1 - 1) * DD + idx];
    endfunction
    function ovf_end;
        input dummy;
        integer c;
        begin
            if (C0 == 0 && C1 == NSEG) begin
                ovf_end = ovfmem[0] != 0;
            end else begin
                ovf_end = 1'b0;
                for (c = C0; c < C1; c = c + 1) ovf_end = ovf_end | (ovfchk[c] != 0);
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
    localparam S_RESET = 0, S_LOAD = 1, S_STREAM = 2, S_DRAIN = 3, S_READ = 4, S_WAIT = 5, S_DONE = 6;
    integer state = S_RESET;
    integer cycle = 0;
    integer rst_count = 0;
    integer xi = 0;              // x transfers done
    integer zi = 0;              // z transfers checked
    integer k = 0;               // R word index (load / readback)
    integer wait_count = 0;
    integer drain_count = 0;
    integer i;
    integer mismatches = 0;
    integer r_checked = 0;
    integer first_sample = -1;
    integer first_word = -1;
    reg [8*8-1:0] first_kind = "none";
    reg signed [WR-1:0] first_expected = 0;
    reg signed [WR-1:0] first_got = 0;
    integer t_x0 = -1;           // cycle of the first x transfer
    integer t_z0 = -1;           // cycle at which the first z is valid
    integer t_calm_a = -1;       // cycle of x transfer CALM/2
    integer t_calm_b = -1;       // cycle of x transfer CALM-1
    integer t_stream_end = -1;
    integer ovf_expected = 0;
    integer ovf_got = 0;
    integer timeout = 0;
    reg signed [W-1:0] ew, gw;
    reg signed [WR-1:0] er, gr;
    reg x_fire, z_fire, calm;

    task note_mismatch;
        input [8*8-1:0] kind;
        input integer sample;
        input integer word;
        input [WR-1:0] expected;
        input [WR-1:0] got;
        begin
            if (mismatches < MAXREPORT)
                $display("MISMATCH kind=%0s sample=%0d word=%0d expected=%0d got=%0d",
                         kind, sample, word, $signed(expected), $signed(got));
            if (mismatches == 0) begin
                first_kind = kind;
                first_sample = sample;
                first_word = word;
                first_expected = expected;
                first_got = got;
            end
            mismatches = mismatches + 1;
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
                    state = S_LOAD;
                    k = 0;
                end
            end
            S_LOAD: begin
                // one R word per cycle through the write port (busy is 0 after reset)
                if (k < DD) begin
                    r_we <= 1'b1;
                    r_addr <= k;
                    r_wdata <= r_start(k);
                    k = k + 1;
                end else begin
                    r_we <= 1'b0;
                    state = S_STREAM;
                end
            end
            S_STREAM, S_DRAIN: begin
                // handshakes complete at this edge with the values driven before it
                x_fire = x_valid && x_ready;
                z_fire = z_valid && z_ready;
                if (z_valid && t_z0 < 0) t_z0 = cycle;
                if (x_fire) begin
                    if (xi == 0) t_x0 = cycle;
                    if (xi == CALM / 2) t_calm_a = cycle;
                    if (xi == CALM - 1) t_calm_b = cycle;
                    xi = xi + 1;
                end
                if (z_fire) begin
                    if (zi >= LEN) begin
                        note_mismatch("extra_z", START + zi, -1, 0, 0);
                    end else if (z_payload !== zmem[START + zi]) begin
                        for (i = 0; i < D; i = i + 1) begin
                            ew = zmem[START + zi][i*W +: W];
                            gw = z_payload[i*W +: W];
                            if (ew !== gw) note_mismatch("z", START + zi, i, ew, gw);
                        end
                    end
                    zi = zi + 1;
                end
                calm = (xi < CALM);
                rng = xorshift(rng);
                // x: hold valid and payload until accepted; otherwise maybe insert a gap
                if (!x_valid || x_fire) begin
                    if (xi < LEN && (calm || rng[7:0] >= GAP)) begin
                        x_valid <= 1'b1;
                        x_payload <= xmem[START + xi];
                    end else begin
                        x_valid <= 1'b0;
                    end
                end
                z_ready <= (zi < CALM) || (rng[15:8] >= STALL);
                if (state == S_STREAM && zi >= LEN) begin
                    state = S_DRAIN;
                    t_stream_end = cycle;
                    drain_count = 0;
                end
                if (state == S_DRAIN) begin
                    // let the last update finish; watch for unexpected extra z words meanwhile
                    drain_count = drain_count + 1;
                    if (!busy && drain_count > 4) begin
                        z_ready <= 1'b0;
                        state = S_READ;
                        k = 0;
                    end
                end
            end
            S_READ: begin
                if (k < DD) begin
                    r_re <= 1'b1;
                    r_addr <= k;
                    state = S_WAIT;
                    wait_count = 0;
                end else begin
                    ovf_expected = ovf_end(1'b0);
                    ovf_got = overflow;
                    if (ovf_expected != ovf_got) note_mismatch("ovf", START + LEN, -1, ovf_expected, ovf_got);
                    state = S_DONE;
                end
            end
            S_WAIT: begin
                r_re <= 1'b0;
                wait_count = wait_count + 1;
                if (r_rvalid && wait_count > 1) begin
                    er = r_end(k);
                    gr = r_rdata;
                    if (er !== gr) note_mismatch("r", START + LEN, k, er, gr);
                    r_checked = r_checked + 1;
                    k = k + 1;
                    state = S_READ;
                end else if (wait_count > 16) begin
                    note_mismatch("r_rvalid", START + LEN, k, 1, 0);
                    k = k + 1;
                    state = S_READ;
                end
            end
            default: ;
        endcase
        if (state == S_DONE) begin
            $display("TIMING latency=%0d calm_span=%0d calm_count=%0d stream_cycles=%0d",
                     (t_z0 >= 0 && t_x0 >= 0) ? t_z0 - t_x0 : -1,
                     (t_calm_b >= 0 && t_calm_a >= 0) ? t_calm_b - t_calm_a : -1,
                     (CALM - 1) - (CALM / 2),
                     (t_stream_end >= 0 && t_x0 >= 0) ? t_stream_end - t_x0 : -1);
            $display("RESULT bit_exact=%0d start=%0d samples=%0d z_checked=%0d r_checked=%0d mismatches=%0d timeout=%0d cycles=%0d overflow_expected=%0d overflow_got=%0d first_mismatch=%0d first_kind=%0s first_word=%0d first_expected=%0d first_got=%0d",
                     (mismatches == 0 && timeout == 0 && zi == LEN && r_checked == DD) ? 1 : 0,
                     START, LEN, zi, r_checked, mismatches, timeout, cycle, ovf_expected, ovf_got,
                     first_sample, first_kind, first_word, first_expected, first_got);
            $finish;
        end
    end
endmodule
