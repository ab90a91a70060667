#include "sluice_scan.h"

#include <string.h>

// The JSON scanner's hot loop: the bytes of a string up to the next one it must look at. With
// SSE2 (every x86-64 has it) or AVX2 (most, chosen at run time), one signed compare finds both
// the control characters and the bytes above 0x7F (negative as signed bytes), two more the
// quote and the backslash; elsewhere, 8 bytes a step in a word.

static inline int plain(uint8_t c) {
    return c != '"' && c != '\\' && c >= 0x20 && c < 0x80;
}

// Non-zero if a byte of w may be special (never zero when one is): its bytes are then looked at
// one by one.
static inline uint64_t maybe_special(uint64_t w) {
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    uint64_t quote = w ^ (ones * '"'), backslash = w ^ (ones * '\\');
    return ((quote - ones) | (backslash - ones) | (w - ones * 0x20) | w) & highs;
}

size_t sluice_json_string_plain_end_word(const uint8_t *bytes, size_t start, size_t count) {
    size_t i = start;
    while (count - i >= 8) {
        uint64_t w;
        memcpy(&w, bytes + i, 8);
        if (maybe_special(w) != 0) {
            for (size_t k = i; k < i + 8; k++) {
                if (!plain(bytes[k])) return k;
            }
        }
        i += 8;
    }
    while (i < count && plain(bytes[i])) i++;
    return i;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

int sluice_scan_has_sse2(void) { return 1; }

static inline unsigned special16(__m128i v) {
    __m128i special = _mm_or_si128(
        _mm_or_si128(_mm_cmpeq_epi8(v, _mm_set1_epi8('"')), _mm_cmpeq_epi8(v, _mm_set1_epi8('\\'))),
        _mm_cmplt_epi8(v, _mm_set1_epi8(0x20)));
    return (unsigned)_mm_movemask_epi8(special);
}

size_t sluice_json_string_plain_end_sse2(const uint8_t *bytes, size_t start, size_t count) {
    size_t i = start;
    while (count - i >= 16) {
        unsigned mask = special16(_mm_loadu_si128((const __m128i *)(bytes + i)));
        if (mask != 0) return i + (size_t)__builtin_ctz(mask);
        i += 16;
    }
    if (i == count) return count;
    if (count >= 16) {
        // The last 1-15 bytes: one load of the 16 that end at count, the bytes before i dropped.
        size_t from = count - 16;
        unsigned mask = special16(_mm_loadu_si128((const __m128i *)(bytes + from))) >> (i - from);
        return mask != 0 ? i + (size_t)__builtin_ctz(mask) : count;
    }
    while (i < count && plain(bytes[i])) i++;
    return i;
}

static int avx2_supported;

__attribute__((constructor)) static void sluice_scan_detect(void) {
    __builtin_cpu_init();
    avx2_supported = __builtin_cpu_supports("avx2");
}

int sluice_scan_has_avx2(void) { return avx2_supported; }

__attribute__((target("avx2"))) size_t sluice_json_string_plain_end_avx2(const uint8_t *bytes, size_t start, size_t count) {
    if (!avx2_supported) return 0;
    size_t i = start;
    while (count - i >= 32) {
        __m256i v = _mm256_loadu_si256((const __m256i *)(bytes + i));
        __m256i special = _mm256_or_si256(
            _mm256_or_si256(_mm256_cmpeq_epi8(v, _mm256_set1_epi8('"')), _mm256_cmpeq_epi8(v, _mm256_set1_epi8('\\'))),
            _mm256_cmpgt_epi8(_mm256_set1_epi8(0x20), v));
        unsigned mask = (unsigned)_mm256_movemask_epi8(special);
        if (mask != 0) return i + (size_t)__builtin_ctz(mask);
        i += 32;
    }
    // Fewer than 32 left: 16 at a time, then the last 16.
    return sluice_json_string_plain_end_sse2(bytes, i, count);
}

size_t sluice_json_string_plain_end(const uint8_t *bytes, size_t start, size_t count) {
    return avx2_supported ? sluice_json_string_plain_end_avx2(bytes, start, count)
                          : sluice_json_string_plain_end_sse2(bytes, start, count);
}

#else

int sluice_scan_has_sse2(void) { return 0; }
size_t sluice_json_string_plain_end_sse2(const uint8_t *bytes, size_t start, size_t count) {
    (void)bytes; (void)start; (void)count;
    return 0;
}
int sluice_scan_has_avx2(void) { return 0; }
size_t sluice_json_string_plain_end_avx2(const uint8_t *bytes, size_t start, size_t count) {
    (void)bytes; (void)start; (void)count;
    return 0;
}

size_t sluice_json_string_plain_end(const uint8_t *bytes, size_t start, size_t count) {
    return sluice_json_string_plain_end_word(bytes, start, count);
}

#endif
