/* bfloat16 rounding: a float32 to the nearest bf16 value (ties to even; NaN
 * stays NaN), kept in a float32 whose low 16 bits are zero. The same as
 * minit2t.amp.to_bf16 and torch's .bfloat16(). The bits of a float32 are
 * sign (1), exponent (8), significand (23); bf16 keeps the top 16. Adding
 * 0x7FFF plus the lowest kept bit before cutting the low 16 rounds to
 * nearest with ties to even; a carry into the exponent is right too. */
#ifndef MINIT2T_BF16_H
#define MINIT2T_BF16_H
#include <stdint.h>
#include <string.h>

static inline float round_bf16(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    if ((u & 0x7FFFFFFFu) > 0x7F800000u) return x;          /* NaN */
    u = (u + 0x7FFFu + ((u >> 16) & 1u)) & 0xFFFF0000u;
    memcpy(&x, &u, sizeof x);
    return x;
}

#endif
