/* The kernel library's portable paths on another CPU (built for AArch64 and run under
 * qemu by tests/test_runtime_aarch64.py): a binary convolution with its fused residual
 * and RPReLU against a naive reference, bit for bit; max pooling (NaN included) and
 * average pooling against naive loops; a transposition. Exit status 0 when all agree. */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bnn_runtime.h"

static float frand(void) { return rand() / (float)RAND_MAX - 0.5f; }
int main(void) {
    int fails = 0;
    printf("isa supported: portable %d avx2 %d avx512 %d\n", bnn_isa_supported(0),
           bnn_isa_supported(1), bnn_isa_supported(2));
    /* 70 input channels (a partial word), 77 outputs (a partial block), 3x3, stride 2,
     * zero padding 1, float input and output, residual and RPReLU fused */
    const int C = 70, O = 77, H = 9, W = 8, K = 3, S = 2, P = 1, words = 2;
    float *x = malloc(4 * H * W * C);
    for (int i = 0; i < H * W * C; i++)
        x[i] = frand();
    uint64_t *wq = calloc(O * K * K * words, 8);
    int8_t *ws = malloc(O * K * K * C);
    for (int o = 0; o < O; o++)
        for (int t = 0; t < K * K; t++)
            for (int c = 0; c < C; c++) {
                int bit = rand() & 1;
                ws[(o * K * K + t) * C + c] = bit ? 1 : -1;
                if (bit)
                    wq[(o * K * K + t) * words + c / 64] |= 1ULL << (c % 64);
            }
    float sc[77], bi[77], sl[77], si[77], so[77];
    for (int o = 0; o < O; o++) {
        sc[o] = 0.01f + 0.1f * (rand() / (float)RAND_MAX);
        bi[o] = frand();
        sl[o] = 3 * frand();
        si[o] = frand();
        so[o] = frand();
    }
    bnn_conv_spec s = {C, O, K, K, S, S, P, P, 1, 0, wq, NULL, {sc, bi, NULL, sl, si, so}};
    bnn_conv *cv = bnn_conv2d_create(&s, NULL);
    const int HO = (H + 2 * P - K) / S + 1, WO = (W + 2 * P - K) / S + 1;
    float *y = malloc(4 * HO * WO * O), *res = malloc(4 * HO * WO * O);
    for (int i = 0; i < HO * WO * O; i++)
        res[i] = frand();
    if (bnn_conv2d_run(cv, x, 0, 1, H, W, y, 0, res, 0, 2) != 0) {
        printf("run failed\n");
        return 1;
    }
    for (int oy = 0; oy < HO; oy++)
        for (int ox = 0; ox < WO; ox++)
            for (int o = 0; o < O; o++) {
                int dot = 0;
                for (int ky = 0; ky < K; ky++)
                    for (int kx = 0; kx < K; kx++) {
                        int iy = oy * S - P + ky, ix = ox * S - P + kx;
                        if (iy < 0 || iy >= H || ix < 0 || ix >= W)
                            continue;
                        for (int c = 0; c < C; c++)
                            dot += (x[(iy * W + ix) * C + c] >= 0 ? 1 : -1) *
                                   ws[(o * K * K + ky * K + kx) * C + c];
                    }
                float prod = sc[o] * (float)dot;
                float v = prod + bi[o];
                v = v + res[(oy * WO + ox) * O + o];
                v = v + si[o];
                float scaled = sl[o] * v;
                v = v > 0.0f ? v : scaled;
                v = v + so[o];
                float got = y[(oy * WO + ox) * O + o];
                if (memcmp(&got, &v, 4) != 0) {
                    if (fails++ < 5)
                        printf("conv mismatch %d %d %d: %g vs %g\n", oy, ox, o, got, v);
                }
            }
    /* max pool 3x3 s2 p1 and avg 2x2 s2 on 5x6x37 with a NaN */
    const int PH = 5, PW = 6, PC = 37;
    float *px = malloc(4 * PH * PW * PC);
    for (int i = 0; i < PH * PW * PC; i++)
        px[i] = frand();
    px[7] = NAN;
    float mx[3 * 3 * 37], av[2 * 3 * 37];
    bnn_pool_spec max_pool = {{1, PH, PW, PC, 3, 3, 3, 3, 2, 2, 1, 1, 1, 1}, 0, 0, 0};
    bnn_pool2d(&max_pool, px, mx, 0, 2);
    for (int oy = 0; oy < 3; oy++)
        for (int ox = 0; ox < 3; ox++)
            for (int c = 0; c < PC; c++) {
                float m = -INFINITY;
                int first = 1;
                for (int ky = 0; ky < 3; ky++)
                    for (int kx = 0; kx < 3; kx++) {
                        int iy = oy * 2 - 1 + ky, ix = ox * 2 - 1 + kx;
                        if (iy < 0 || iy >= PH || ix < 0 || ix >= PW)
                            continue;
                        float v = px[(iy * PW + ix) * PC + c];
                        if (first || v > m || v != v)
                            m = v;
                        first = 0;
                    }
                float got = mx[(oy * 3 + ox) * PC + c];
                if (!(got == m || (got != got && m != m))) {
                    if (fails++ < 10)
                        printf("max mismatch\n");
                }
            }
    bnn_pool_spec average = {{1, PH, PW, PC, 2, 3, 2, 2, 2, 2, 0, 0, 1, 1}, 1, 1, 0};
    bnn_pool2d(&average, px, av, 0, 2);
    for (int oy = 0; oy < 2; oy++)
        for (int ox = 0; ox < 3; ox++)
            for (int c = 0; c < PC; c++) {
                float sum = px[((oy * 2) * PW + ox * 2) * PC + c];
                sum += px[((oy * 2) * PW + ox * 2 + 1) * PC + c];
                sum += px[((oy * 2 + 1) * PW + ox * 2) * PC + c];
                sum += px[((oy * 2 + 1) * PW + ox * 2 + 1) * PC + c];
                float ref = sum / 4.0f, got = av[(oy * 3 + ox) * PC + c];
                if (!(got == ref || (got != got && ref != ref))) {
                    if (fails++ < 15)
                        printf("avg mismatch %g %g\n", got, ref);
                }
            }
    float t_in[3 * 50], t_out[3 * 50];
    for (int i = 0; i < 150; i++)
        t_in[i] = (float)i;
    bnn_transpose(t_in, 1, 3, 50, t_out, 2);
    for (int r = 0; r < 3; r++)
        for (int c = 0; c < 50; c++)
            if (t_out[c * 3 + r] != t_in[r * 50 + c])
                fails++;
    printf("%s (%d mismatches)\n", fails ? "FAILED" : "all equal", fails);
    return fails != 0;
}
