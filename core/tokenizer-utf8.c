/* UTF-8 helpers of the tokenizer: validation with Rust/Python "maximal
 * subpart" replacement (what HF sees after from_utf8_lossy or
 * bytes.decode("utf-8", "replace")) and the GPT-2 byte alphabet. */
#include "tokenizer-impl.h"

#include <string.h>

int zl_utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    int need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        if (c == 0xE0)
            lo = 0xA0;
        else if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        if (c == 0xF0)
            lo = 0x90;
        else if (c == 0xF4)
            hi = 0x8F;
    } else {
        return -1;
    }
    for (int k = 1; k <= need; k++) {
        if ((size_t)k >= n)
            return 0;
        unsigned b = s[k];
        if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF))
            return -k;
    }
    return need + 1;
}

static const char k_fffd[3] = {(char)0xEF, (char)0xBF, (char)0xBD};

int zl_utf8_lossy(const char *s, size_t n, struct zl_tok_buf *out)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, run = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        int k = zl_utf8_seq(u + i, n - i);
        if (k > 0) {
            i += (size_t)k;
            continue;
        }
        if (zl_tok_buf_put(out, s + run, i - run) < 0 || zl_tok_buf_put(out, k_fffd, 3) < 0)
            return ZL_ENOMEM;
        i += k == 0 ? n - i : (size_t)-k;
        run = i;
    }
    return zl_tok_buf_put(out, s + run, n - run);
}

size_t zl_utf8_encode(uint32_t cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (char)(0xC0 | (cp >> 6));
        o[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12));
        o[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18));
    o[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Decodes one code point of valid UTF-8 (callers validated); a stray byte
 * decodes as itself with adv 1 so that no input can loop or overrun. */
uint32_t zl_utf8_decode(const char *s, size_t n, size_t *adv)
{
    const unsigned char *u = (const unsigned char *)s;
    int k = zl_utf8_seq(u, n);
    if (k <= 1) {
        *adv = 1;
        return u[0];
    }
    *adv = (size_t)k;
    uint32_t cp = u[0] & (0xFF >> (k + 1));
    for (int i = 1; i < k; i++)
        cp = (cp << 6) | (u[i] & 0x3F);
    return cp;
}

/* Rust char::is_whitespace (Unicode White_Space). */
int zl_utf8_is_space(uint32_t c)
{
    return (c >= 9 && c <= 13) || c == 32 || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F ||
           c == 0x205F || c == 0x3000;
}

/* GPT-2: printable bytes keep their code point, the other 68 bytes map in
 * order to U+0100... */
static int printable(unsigned b)
{
    return (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174);
}

/* Both directions, built once: byte -> code point and code point (< 324)
 * -> byte or -1. */
static uint16_t g_cp[256];
static int16_t g_byte[256 + 68];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void tables(void)
{
    unsigned k = 0;
    for (unsigned i = 0; i < 256 + 68; i++)
        g_byte[i] = -1;
    for (unsigned b = 0; b < 256; b++) {
        g_cp[b] = (uint16_t)(printable(b) ? b : 256 + k++);
        g_byte[g_cp[b]] = (int16_t)b;
    }
}

uint32_t zl_bytelevel_cp(uint8_t b)
{
    pthread_once(&g_once, tables);
    return g_cp[b];
}

int zl_bytelevel_byte(uint32_t cp)
{
    pthread_once(&g_once, tables);
    return cp < 256 + 68 ? g_byte[cp] : -1;
}
