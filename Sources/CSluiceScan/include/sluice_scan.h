#ifndef SLUICE_SCAN_H
#define SLUICE_SCAN_H

#include <stddef.h>
#include <stdint.h>

/// The offset of the first byte in bytes[start, count) that a JSON string cannot hold as it is —
/// a quotation mark, a backslash, a control character (below 0x20) or a byte above 0x7F (the
/// start of a UTF-8 sequence, checked by the caller) — or count if there is none. Reads no byte
/// outside bytes[0, count); start <= count. Runs the widest variant below this CPU has.
size_t sluice_json_string_plain_end(const uint8_t *bytes, size_t start, size_t count);

/// The variants, each with the same result (for tests): 8 bytes a step in a word (any CPU),
/// 16 with SSE2 and 32 with AVX2 (x86-64; 0 where not built or not supported by this CPU).
size_t sluice_json_string_plain_end_word(const uint8_t *bytes, size_t start, size_t count);
int sluice_scan_has_sse2(void);
size_t sluice_json_string_plain_end_sse2(const uint8_t *bytes, size_t start, size_t count);
int sluice_scan_has_avx2(void);
size_t sluice_json_string_plain_end_avx2(const uint8_t *bytes, size_t start, size_t count);

#endif
