/* Jinja lexer: splits template source into data and tag tokens with Hugging
 * Face's whitespace settings (trim_blocks, lstrip_blocks) and the '-' / '+'
 * modifiers, then tokenises the expressions inside tags. */
#include <stdlib.h>
#include <string.h>
#include "tok/jinja_int.h"

typedef struct lexer {
    jarena *a;
    const char *s;
    size_t len, pos;
    int line;               /* line of s[pos] */
    size_t line_pos;        /* position up to which lines are counted */
    jtok *t;
    size_t n, cap;
} lexer;

static bool is_ws(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }
static bool is_alpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_digit(char c) { return c >= '0' && c <= '9'; }

static int line_at(lexer *L, size_t pos) {
    for (; L->line_pos < pos && L->line_pos < L->len; L->line_pos++)
        if (L->s[L->line_pos] == '\n') L->line++;
    return L->line;
}

static jtok *emit(lexer *L, tkt t, size_t at, const char *p, size_t n) {
    if (L->n == L->cap) {
        size_t nc = L->cap ? L->cap * 2 : 64;
        jtok *nt = ja_alloc(L->a, nc * sizeof *nt);
        if (L->n) memcpy(nt, L->t, L->n * sizeof *nt);
        L->t = nt;
        L->cap = nc;
    }
    jtok *k = &L->t[L->n++];
    memset(k, 0, sizeof *k);
    k->t = t;
    k->line = line_at(L, at);
    k->p = p;
    k->n = n;
    return k;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static size_t put_utf8(char *o, uint32_t cp) {
    if (cp < 0x80) { o[0] = (char)cp; return 1; }
    if (cp < 0x800) { o[0] = (char)(0xC0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 63)); return 2; }
    if (cp < 0x10000) {
        o[0] = (char)(0xE0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 63));
        o[2] = (char)(0x80 | (cp & 63)); return 3;
    }
    o[0] = (char)(0xF0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 63));
    o[2] = (char)(0x80 | ((cp >> 6) & 63)); o[3] = (char)(0x80 | (cp & 63)); return 4;
}

/* Decodes a string literal body with Python's escapes; unknown escapes are
 * kept with their backslash, as Python's unicode-escape does. */
static void lex_string(lexer *L, size_t start) {
    char q = L->s[L->pos++];
    size_t b = L->pos;
    while (L->pos < L->len && L->s[L->pos] != q) {
        if (L->s[L->pos] == '\\' && L->pos + 1 < L->len) L->pos++;
        L->pos++;
    }
    if (L->pos >= L->len)
        ja_fail(L->a, TS_ERR_FORMAT, line_at(L, start), "unterminated string literal");
    size_t e = L->pos++;
    char *o = ja_alloc(L->a, e - b + 1);
    size_t n = 0;
    for (size_t i = b; i < e; i++) {
        char c = L->s[i];
        if (c != '\\' || i + 1 >= e) { o[n++] = c; continue; }
        char d = L->s[++i];
        int digits = 0;
        switch (d) {
        case 'n': o[n++] = '\n'; break;
        case 't': o[n++] = '\t'; break;
        case 'r': o[n++] = '\r'; break;
        case 'a': o[n++] = '\a'; break;
        case 'b': o[n++] = '\b'; break;
        case 'f': o[n++] = '\f'; break;
        case 'v': o[n++] = '\v'; break;
        case '\\': o[n++] = '\\'; break;
        case '\'': o[n++] = '\''; break;
        case '"': o[n++] = '"'; break;
        case '\n': break;
        case 'x': digits = 2; break;
        case 'u': digits = 4; break;
        case 'U': digits = 8; break;
        default:
            if (d >= '0' && d <= '7') {
                uint32_t v = 0;
                int k = 0;
                for (; k < 3 && i < e && L->s[i] >= '0' && L->s[i] <= '7'; k++, i++)
                    v = v * 8 + (uint32_t)(L->s[i] - '0');
                i--;
                n += put_utf8(o + n, v);
            } else {
                o[n++] = '\\';
                o[n++] = d;
            }
        }
        if (digits) {
            uint32_t v = 0;
            for (int k = 0; k < digits; k++) {
                int h = i + 1 + (size_t)k < e ? hexval(L->s[i + 1 + k]) : -1;
                if (h < 0)
                    ja_fail(L->a, TS_ERR_FORMAT, line_at(L, start), "truncated \\%c escape in string literal", d);
                v = v * 16 + (uint32_t)h;
            }
            if (v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
                ja_fail(L->a, TS_ERR_FORMAT, line_at(L, start), "invalid code point escape in string literal");
            i += (size_t)digits;
            n += put_utf8(o + n, v);   /* \xHH (<=0xFF) fits: 2 bytes out of 4 in */
        }
    }
    o[n] = 0;
    emit(L, TK_STRING, start, o, n);
}

static void skip_digits(lexer *L) {
    while (L->pos < L->len && (is_digit(L->s[L->pos]) ||
           (L->s[L->pos] == '_' && L->pos + 1 < L->len && is_digit(L->s[L->pos + 1]))))
        L->pos++;
}

static void lex_number(lexer *L, size_t start, bool after_dot) {
    bool is_float = false;
    skip_digits(L);
    if (!after_dot && L->pos + 1 < L->len && L->s[L->pos] == '.' && is_digit(L->s[L->pos + 1])) {
        is_float = true;
        L->pos++;
        skip_digits(L);
    }
    if (!after_dot && L->pos < L->len && (L->s[L->pos] == 'e' || L->s[L->pos] == 'E')) {
        size_t p = L->pos + 1;
        if (p < L->len && (L->s[p] == '+' || L->s[p] == '-')) p++;
        if (p < L->len && is_digit(L->s[p])) {
            is_float = true;
            L->pos = p;
            skip_digits(L);
        }
    }
    /* the literal without its '_' separators */
    char *buf = ja_alloc(L->a, L->pos - start + 1);
    size_t n = 0;
    for (size_t i = start; i < L->pos; i++)
        if (L->s[i] != '_') buf[n++] = L->s[i];
    buf[n] = 0;
    jtok *k = emit(L, is_float ? TK_FLOAT : TK_INT, start, L->s + start, L->pos - start);
    if (is_float) {
        k->f = strtod(buf, NULL);
    } else {
        size_t z = 0;
        while (z + 1 < n && buf[z] == '0') z++;
        unsigned long long v = strtoull(buf + z, NULL, 10);
        if (n - z > 19 || v > (unsigned long long)INT64_MAX)
            ja_fail(L->a, TS_ERR_FORMAT, line_at(L, start), "integer literal %.40s is too large", buf);
        k->i = (int64_t)v;
    }
}

/* Tokenises a tag's inside up to its closer ("}}" or "%}"); returns the
 * closer's modifier ('-', '+' or 0). */
static char lex_tag(lexer *L, bool is_var, size_t open_at) {
    int depth = 0;
    for (;;) {
        while (L->pos < L->len && is_ws(L->s[L->pos])) L->pos++;
        if (L->pos >= L->len)
            ja_fail(L->a, TS_ERR_FORMAT, line_at(L, open_at), "unterminated %s tag",
                    is_var ? "'{{'" : "'{%'");
        const char *p = L->s + L->pos;
        size_t rest = L->len - L->pos;
        char c1 = is_var ? '}' : '%';
        if (depth == 0) {
            char mod = 0;
            size_t k = 0;
            if ((p[0] == '-' || p[0] == '+') && rest >= 3 && p[1] == c1 && p[2] == '}') { mod = p[0]; k = 1; }
            if (rest >= k + 2 && p[k] == c1 && p[k + 1] == '}') {
                if (mod == '+' && is_var) mod = 0;
                emit(L, is_var ? TK_VAR_END : TK_BLOCK_END, L->pos, p, k + 2);
                L->pos += k + 2;
                return mod;
            }
        }
        size_t start = L->pos;
        char c = *p;
        if (is_alpha(c)) {
            while (L->pos < L->len && (is_alpha(L->s[L->pos]) || is_digit(L->s[L->pos]))) L->pos++;
            emit(L, TK_NAME, start, p, L->pos - start);
        } else if (is_digit(c)) {
            bool after_dot = L->n && L->t[L->n - 1].t == TK_OP && L->t[L->n - 1].p[0] == '.';
            lex_number(L, start, after_dot);
        } else if (c == '\'' || c == '"') {
            lex_string(L, start);
        } else {
            static const char *two[] = {"//", "**", "==", "!=", "<=", ">="};
            size_t n = 0;
            for (size_t i = 0; i < sizeof two / sizeof *two; i++)
                if (rest >= 2 && p[0] == two[i][0] && p[1] == two[i][1]) n = 2;
            if (!n && strchr("+-*/%~<>=()[]{},.:|", c) && c) n = 1;
            if (!n)
                ja_fail(L->a, TS_ERR_FORMAT, line_at(L, start), "unexpected character '%c' in tag", c);
            if (c == '(' || c == '[' || c == '{') depth++;
            if ((c == ')' || c == ']' || c == '}') && depth > 0) depth--;
            emit(L, TK_OP, start, p, n);
            L->pos += n;
        }
    }
}

/* After "{% raw %}": emits everything up to "{% endraw %}" as data. */
static void lex_raw(lexer *L, size_t open_at) {
    for (size_t i = L->pos; i + 1 < L->len; i++) {
        if (L->s[i] != '{' || L->s[i + 1] != '%') continue;
        size_t j = i + 2;
        bool strip = j < L->len && L->s[j] == '-';
        if (j < L->len && (L->s[j] == '-' || L->s[j] == '+')) j++;
        while (j < L->len && is_ws(L->s[j])) j++;
        if (L->len - j < 6 || memcmp(L->s + j, "endraw", 6) != 0) continue;
        j += 6;
        while (j < L->len && is_ws(L->s[j])) j++;
        char mod = 0;
        if (j < L->len && (L->s[j] == '-' || L->s[j] == '+')) mod = L->s[j++];
        if (L->len - j < 2 || L->s[j] != '%' || L->s[j + 1] != '}') continue;
        size_t e = i;
        if (strip) while (e > L->pos && is_ws(L->s[e - 1])) e--;
        if (e > L->pos) emit(L, TK_DATA, L->pos, L->s + L->pos, e - L->pos);
        L->pos = j + 2;
        if (mod == '-') while (L->pos < L->len && is_ws(L->s[L->pos])) L->pos++;
        else if (mod != '+' && L->pos < L->len && L->s[L->pos] == '\n') L->pos++;
        return;
    }
    ja_fail(L->a, TS_ERR_FORMAT, line_at(L, open_at), "'{%% raw %%}' without '{%% endraw %%}'");
}

void jinja_lex(jarena *a, const char *src, size_t len, jtok **toks, size_t *n_toks) {
    lexer L = {.a = a, .s = src, .len = len, .line = 1};
    bool strip_lead = false;
    while (L.pos <= L.len) {
        if (strip_lead) while (L.pos < L.len && is_ws(L.s[L.pos])) L.pos++;
        strip_lead = false;
        size_t d0 = L.pos, tag = L.len;
        char kind = 0;
        for (size_t i = L.pos; i + 1 < L.len; i++) {
            if (L.s[i] == '{' && (L.s[i + 1] == '{' || L.s[i + 1] == '%' || L.s[i + 1] == '#')) {
                tag = i;
                kind = L.s[i + 1];
                break;
            }
        }
        size_t d1 = tag;
        char mod = 0;
        if (kind) {
            mod = tag + 2 < L.len ? L.s[tag + 2] : 0;
            if (mod != '-' && mod != '+') mod = 0;
            if (mod == '+' && kind == '{') mod = 0;
            if (mod == '-') {
                while (d1 > d0 && is_ws(L.s[d1 - 1])) d1--;
            } else if (mod != '+' && kind != '{') {
                size_t l = d1;
                while (l > d0 && L.s[l - 1] != '\n') l--;
                bool line_start = l > d0 || d0 == 0 || L.s[d0 - 1] == '\n';
                bool all_ws = l < d1;
                for (size_t i = l; i < d1 && all_ws; i++) all_ws = is_ws(L.s[i]);
                if (line_start && all_ws) d1 = l;
            }
        }
        if (d1 > d0) emit(&L, TK_DATA, d0, L.s + d0, d1 - d0);
        if (!kind) break;
        L.pos = tag + 2 + (mod ? 1 : 0);
        char close_mod;
        if (kind == '#') {
            size_t i = L.pos;
            while (i + 1 < L.len && !(L.s[i] == '#' && L.s[i + 1] == '}')) i++;
            if (i + 1 >= L.len)
                ja_fail(a, TS_ERR_FORMAT, line_at(&L, tag), "unterminated comment");
            close_mod = i > L.pos && (L.s[i - 1] == '-' || L.s[i - 1] == '+') ? L.s[i - 1] : 0;
            L.pos = i + 2;
        } else {
            emit(&L, kind == '{' ? TK_VAR_BEGIN : TK_BLOCK_BEGIN, tag, L.s + tag, 2);
            size_t first = L.n;
            close_mod = lex_tag(&L, kind == '{', tag);
            if (kind == '%' && L.n == first + 2 && L.t[first].t == TK_NAME &&
                L.t[first].n == 3 && memcmp(L.t[first].p, "raw", 3) == 0) {
                L.n = first - 1;    /* drop "{% raw %}" itself */
                if (close_mod == '-') while (L.pos < L.len && is_ws(L.s[L.pos])) L.pos++;
                else if (close_mod != '+' && L.pos < L.len && L.s[L.pos] == '\n') L.pos++;
                lex_raw(&L, tag);
                continue;
            }
        }
        if (close_mod == '-') strip_lead = true;
        else if (kind != '{' && close_mod != '+' && L.pos < L.len && L.s[L.pos] == '\n') L.pos++;
    }
    emit(&L, TK_EOF, L.len, L.s + L.len, 0);
    *toks = L.t;
    *n_toks = L.n;
}
