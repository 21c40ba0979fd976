/*
 * The character classes of GPT-2's pre-tokenising regex: every code point is
 * exactly one of letter (\p{L}), number (\p{N}), whitespace (\s) or other.
 * The tables (tokenizer/unicode_class.c) are generated from the Python `regex`
 * module that GPT-2's reference encoder uses, by tools/gen_unicode_class.py,
 * so the C pre-tokeniser and the oracle agree on every code point.
 */
#ifndef CU_TOKENIZER_UNICODE_CLASS_H
#define CU_TOKENIZER_UNICODE_CLASS_H

#include <stdint.h>

typedef enum {
    CU_UCLASS_OTHER = 0,
    CU_UCLASS_LETTER = 1,
    CU_UCLASS_NUMBER = 2,
    CU_UCLASS_SPACE = 3,
} cu_uclass_t;

#define CU_UCLASS_BLOCK_SHIFT 7
#define CU_UCLASS_MAX_CP 0x110000u

extern const uint8_t unicode_class_stage1[CU_UCLASS_MAX_CP >> CU_UCLASS_BLOCK_SHIFT];
extern const uint8_t unicode_class_stage2[];

/* The class of code point `cp`; anything past U+10FFFF is "other". */
static inline cu_uclass_t unicode_class(uint32_t cp) {
    if (cp >= CU_UCLASS_MAX_CP) return CU_UCLASS_OTHER;
    uint32_t block = unicode_class_stage1[cp >> CU_UCLASS_BLOCK_SHIFT];
    return (cu_uclass_t)unicode_class_stage2[(block << CU_UCLASS_BLOCK_SHIFT) |
                                             (cp & ((1u << CU_UCLASS_BLOCK_SHIFT) - 1))];
}

/* The class of an ASCII byte (< 0x80) in one load: the generator puts
 * U+0000..U+007F in the first block of unicode_class_stage2. */
static inline cu_uclass_t unicode_class_ascii(uint8_t b) {
    return (cu_uclass_t)unicode_class_stage2[b];
}

#endif
