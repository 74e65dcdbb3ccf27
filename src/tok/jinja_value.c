/* Jinja values: arena, constructors, Python-compatible str()/repr(),
 * json.dumps, equality and ordering, conversion from jansson. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "tok/jinja_int.h"
#include "base/err.h"

struct jblock { jblock *next; size_t size, used; max_align_t data[]; };

_Noreturn void ja_fail(jarena *a, ts_status st, int line, const char *fmt, ...) {
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (line > 0) ts_fail(a->err, st, "template line %d: %s", line, msg);
    else ts_fail(a->err, st, "template: %s", msg);
    *a->st = st;
    longjmp(*a->jb, 1);
}

void *ja_alloc(jarena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    if (n == 0) n = 16;
    if (n > a->cap || a->used > a->cap - n)
        ja_fail(a, TS_ERR_CAPACITY, 0, "memory limit of %zu bytes reached", a->cap);
    jblock *b = a->head;
    if (!b || b->size - b->used < n) {
        size_t sz = n > 65536 ? n : 65536;
        b = malloc(sizeof *b + sz);
        if (!b) ja_fail(a, TS_ERR_NOMEM, 0, "out of memory");
        b->next = a->head;
        b->size = sz;
        b->used = 0;
        a->head = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    a->used += n;
    memset(p, 0, n);
    return p;
}

char *ja_strdup(jarena *a, const char *s, size_t n) {
    char *p = ja_alloc(a, n + 1);
    if (n) memcpy(p, s, n);
    p[n] = 0;
    return p;
}

void ja_free(jarena *a) {
    jblock *b = a->head;
    while (b) {
        jblock *nx = b->next;
        free(b);
        b = nx;
    }
    a->head = NULL;
    a->used = 0;
}

/* ---- constructors ---- */
jv jv_undef(const char *name) { jv v = {.t = JV_UNDEF}; v.u.s.p = name; return v; }
jv jv_none(void) { jv v = {.t = JV_NONE}; return v; }
jv jv_bool(bool b) { jv v = {.t = JV_BOOL}; v.u.b = b; return v; }
jv jv_int(int64_t i) { jv v = {.t = JV_INT}; v.u.i = i; return v; }
jv jv_float(double f) { jv v = {.t = JV_FLOAT}; v.u.f = f; return v; }
jv jv_str(const char *p, size_t n) { jv v = {.t = JV_STR}; v.u.s.p = p; v.u.s.n = n; return v; }
jv jv_cstr(const char *s) { return jv_str(s, strlen(s)); }

jv jv_newlist(jctx *c, size_t cap) {
    jv v = {.t = JV_LIST};
    v.u.l = ja_alloc(c->a, sizeof *v.u.l);
    if (cap) {
        v.u.l->v = ja_alloc(c->a, cap * sizeof(jv));
        v.u.l->cap = cap;
    }
    return v;
}

jv jv_newdict(jctx *c, uint8_t kind) {
    jv v = {.t = JV_DICT};
    v.u.d = ja_alloc(c->a, sizeof *v.u.d);
    v.u.d->kind = kind;
    return v;
}

void jv_list_push(jctx *c, jlist *l, jv x) {
    if (l->n == l->cap) {
        size_t nc = l->cap ? l->cap * 2 : 4;
        jv *nv = ja_alloc(c->a, nc * sizeof *nv);
        if (l->n) memcpy(nv, l->v, l->n * sizeof *nv);
        l->v = nv;
        l->cap = nc;
    }
    l->v[l->n++] = x;
}

jv *jv_dict_get(const jdict *d, const char *key, size_t n) {
    for (size_t i = 0; i < d->n; i++)
        if (d->k[i].t == JV_STR && d->k[i].u.s.n == n && memcmp(d->k[i].u.s.p, key, n) == 0)
            return &d->v[i];
    return NULL;
}

jv *jv_dict_getv(const jdict *d, jv key) {
    if (key.t == JV_STR) return jv_dict_get(d, key.u.s.p, key.u.s.n);
    for (size_t i = 0; i < d->n; i++)
        if (jv_eq(d->k[i], key)) return &d->v[i];
    return NULL;
}

void jv_dict_set(jctx *c, jdict *d, jv k, jv v) {
    jv *old = jv_dict_getv(d, k);
    if (old) {
        *old = v;
        return;
    }
    if (d->n == d->cap) {
        size_t nc = d->cap ? d->cap * 2 : 4;
        jv *nk = ja_alloc(c->a, nc * sizeof *nk), *nv = ja_alloc(c->a, nc * sizeof *nv);
        if (d->n) {
            memcpy(nk, d->k, d->n * sizeof *nk);
            memcpy(nv, d->v, d->n * sizeof *nv);
        }
        d->k = nk;
        d->v = nv;
        d->cap = nc;
    }
    d->k[d->n] = k;
    d->v[d->n++] = v;
}

jv jv_from_json(jctx *c, const json_t *j) {
    switch (json_typeof(j)) {
    case JSON_OBJECT: {
        jv d = jv_newdict(c, JD_PLAIN);
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)j, k, x)
            jv_dict_set(c, d.u.d, jv_cstr(k), jv_from_json(c, x));
        return d;
    }
    case JSON_ARRAY: {
        jv l = jv_newlist(c, json_array_size(j));
        for (size_t i = 0; i < json_array_size(j); i++)
            jv_list_push(c, l.u.l, jv_from_json(c, json_array_get(j, i)));
        return l;
    }
    case JSON_STRING: return jv_str(json_string_value(j), json_string_length(j));
    case JSON_INTEGER: return jv_int((int64_t)json_integer_value(j));
    case JSON_REAL: return jv_float(json_real_value(j));
    case JSON_TRUE: return jv_bool(true);
    case JSON_FALSE: return jv_bool(false);
    default: return jv_none();
    }
}

bool jv_truthy(jv v) {
    switch (v.t) {
    case JV_UNDEF: case JV_NONE: return false;
    case JV_BOOL: return v.u.b;
    case JV_INT: return v.u.i != 0;
    case JV_FLOAT: return v.u.f != 0.0;
    case JV_STR: return v.u.s.n != 0;
    case JV_LIST: return v.u.l->n != 0;
    case JV_DICT: return v.u.d->kind != JD_PLAIN || v.u.d->n != 0;
    default: return true;
    }
}

bool jv_is_num(jv v) { return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL; }
double jv_num(jv v) {
    return v.t == JV_FLOAT ? v.u.f : v.t == JV_INT ? (double)v.u.i : v.t == JV_BOOL ? v.u.b : 0.0;
}

bool jv_eq(jv a, jv b) {
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a.t != JV_FLOAT && b.t != JV_FLOAT) {
            int64_t x = a.t == JV_INT ? a.u.i : a.u.b, y = b.t == JV_INT ? b.u.i : b.u.b;
            return x == y;
        }
        return jv_num(a) == jv_num(b);
    }
    if (a.t != b.t) return false;
    switch (a.t) {
    case JV_UNDEF: case JV_NONE: return true;
    case JV_STR: return a.u.s.n == b.u.s.n && memcmp(a.u.s.p, b.u.s.p, a.u.s.n) == 0;
    case JV_LIST:
        if (a.u.l->n != b.u.l->n) return false;
        for (size_t i = 0; i < a.u.l->n; i++)
            if (!jv_eq(a.u.l->v[i], b.u.l->v[i])) return false;
        return true;
    case JV_DICT:
        if (a.u.d == b.u.d) return true;
        if (a.u.d->kind != JD_PLAIN || b.u.d->kind != JD_PLAIN || a.u.d->n != b.u.d->n) return false;
        for (size_t i = 0; i < a.u.d->n; i++) {
            jv *o = jv_dict_getv(b.u.d, a.u.d->k[i]);
            if (!o || !jv_eq(a.u.d->v[i], *o)) return false;
        }
        return true;
    case JV_FUNC: return a.sub == b.sub && a.u.m.node == b.u.m.node;
    case JV_MACRO: return a.u.m.node == b.u.m.node && a.u.m.scope == b.u.m.scope;
    default: return false;
    }
}

const char *jv_type_name(jv v) {
    static const char *names[] = {"undefined", "NoneType", "bool", "int", "float", "str",
                                  "list", "dict", "function", "macro"};
    if (v.t == JV_LIST && v.u.l->kind == JL_TUPLE) return "tuple";
    if (v.t == JV_DICT && v.u.d->kind == JD_NAMESPACE) return "Namespace";
    if (v.t == JV_DICT && v.u.d->kind == JD_LOOP) return "LoopContext";
    return v.t <= JV_MACRO ? names[v.t] : "?";
}

int jv_cmp(jctx *c, jv a, jv b) {
    if (jv_is_num(a) && jv_is_num(b)) {
        if (a.t != JV_FLOAT && b.t != JV_FLOAT) {
            int64_t x = a.t == JV_INT ? a.u.i : a.u.b, y = b.t == JV_INT ? b.u.i : b.u.b;
            return (x > y) - (x < y);
        }
        double x = jv_num(a), y = jv_num(b);
        return (x > y) - (x < y);
    }
    if (a.t == JV_STR && b.t == JV_STR) {
        size_t n = a.u.s.n < b.u.s.n ? a.u.s.n : b.u.s.n;
        int r = n ? memcmp(a.u.s.p, b.u.s.p, n) : 0;   /* UTF-8 byte order = code point order */
        if (r) return r < 0 ? -1 : 1;
        return (a.u.s.n > b.u.s.n) - (a.u.s.n < b.u.s.n);
    }
    if (a.t == JV_LIST && b.t == JV_LIST) {
        for (size_t i = 0; i < a.u.l->n && i < b.u.l->n; i++) {
            if (jv_eq(a.u.l->v[i], b.u.l->v[i])) continue;
            return jv_cmp(c, a.u.l->v[i], b.u.l->v[i]);
        }
        return (a.u.l->n > b.u.l->n) - (a.u.l->n < b.u.l->n);
    }
    jx_fail(c, "cannot compare '%s' with '%s'", jv_type_name(a), jv_type_name(b));
}

/* ---- string builder ---- */
void jsb_put(jctx *c, jsb *b, const char *p, size_t n) {
    if (!n) return;
    if (b == c->out && b->n + n > c->max_output)
        ja_fail(c->a, TS_ERR_CAPACITY, c->line, "output limit of %zu bytes reached", c->max_output);
    if (b->n + n + 1 > b->cap) {
        size_t nc = b->cap ? b->cap * 2 : 64;
        while (nc < b->n + n + 1) nc *= 2;
        char *np = ja_alloc(c->a, nc);
        if (b->n) memcpy(np, b->p, b->n);
        b->p = np;
        b->cap = nc;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
    b->p[b->n] = 0;
}

void jsb_putc(jctx *c, jsb *b, char ch) { jsb_put(c, b, &ch, 1); }

void jsb_printf(jctx *c, jsb *b, const char *fmt, ...) {
    char tmp[128];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n > 0) jsb_put(c, b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

jv jsb_take(jsb *b) { return jv_str(b->p ? b->p : "", b->n); }

/* Python's repr(float): the shortest digits that read back exactly,
 * exponent form below 1e-4 and from 1e16. */
static void write_float(jctx *c, jsb *b, double f, bool json) {
    if (isnan(f)) { jsb_put(c, b, json ? "NaN" : "nan", 3); return; }
    if (isinf(f)) {
        if (json) jsb_put(c, b, f < 0 ? "-Infinity" : "Infinity", f < 0 ? 9 : 8);
        else jsb_put(c, b, f < 0 ? "-inf" : "inf", f < 0 ? 4 : 3);
        return;
    }
    char tmp[64];
    int prec = 1;
    for (; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, f);
        if (strtod(tmp, NULL) == f) break;
    }
    /* tmp = [-]d.ddde[+-]xx */
    char digits[32];
    size_t nd = 0;
    const char *p = tmp;
    bool neg = *p == '-';
    if (neg) p++;
    for (; *p && *p != 'e'; p++)
        if (*p != '.') digits[nd++] = *p;
    int exp = atoi(p + 1);
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    if (neg) jsb_putc(c, b, '-');
    if (exp < -4 || exp >= 16) {
        jsb_putc(c, b, digits[0]);
        if (nd > 1) {
            jsb_putc(c, b, '.');
            jsb_put(c, b, digits + 1, nd - 1);
        }
        jsb_printf(c, b, "e%c%02d", exp < 0 ? '-' : '+', exp < 0 ? -exp : exp);
    } else if (exp < 0) {
        jsb_put(c, b, "0.", 2);
        for (int i = -1; i > exp; i--) jsb_putc(c, b, '0');
        jsb_put(c, b, digits, nd);
    } else {
        for (int i = 0; i <= exp; i++) jsb_putc(c, b, (size_t)i < nd ? digits[i] : '0');
        jsb_putc(c, b, '.');
        if ((size_t)exp + 1 < nd) jsb_put(c, b, digits + exp + 1, nd - (size_t)exp - 1);
        else jsb_putc(c, b, '0');
    }
}

static void write_repr_str(jctx *c, jsb *b, const char *p, size_t n) {
    bool has_sq = memchr(p, '\'', n) != NULL, has_dq = memchr(p, '"', n) != NULL;
    char q = has_sq && !has_dq ? '"' : '\'';
    jsb_putc(c, b, q);
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == (unsigned char)q || ch == '\\') { jsb_putc(c, b, '\\'); jsb_putc(c, b, (char)ch); }
        else if (ch == '\n') jsb_put(c, b, "\\n", 2);
        else if (ch == '\r') jsb_put(c, b, "\\r", 2);
        else if (ch == '\t') jsb_put(c, b, "\\t", 2);
        else if (ch < 0x20 || ch == 0x7f) jsb_printf(c, b, "\\x%02x", ch);
        else jsb_putc(c, b, (char)ch);
    }
    jsb_putc(c, b, q);
}

void jv_write_repr(jctx *c, jsb *b, jv v) {
    jx_step(c);
    if (v.t == JV_STR) { write_repr_str(c, b, v.u.s.p, v.u.s.n); return; }
    if (v.t == JV_LIST) {
        bool tup = v.u.l->kind == JL_TUPLE;
        jsb_putc(c, b, tup ? '(' : '[');
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i) jsb_put(c, b, ", ", 2);
            jv_write_repr(c, b, v.u.l->v[i]);
        }
        if (tup && v.u.l->n == 1) jsb_putc(c, b, ',');
        jsb_putc(c, b, tup ? ')' : ']');
        return;
    }
    if (v.t == JV_DICT && v.u.d->kind == JD_PLAIN) {
        jsb_putc(c, b, '{');
        for (size_t i = 0; i < v.u.d->n; i++) {
            if (i) jsb_put(c, b, ", ", 2);
            jv_write_repr(c, b, v.u.d->k[i]);
            jsb_put(c, b, ": ", 2);
            jv_write_repr(c, b, v.u.d->v[i]);
        }
        jsb_putc(c, b, '}');
        return;
    }
    jv_write_str(c, b, v);
}

void jv_write_str(jctx *c, jsb *b, jv v) {
    switch (v.t) {
    case JV_UNDEF: return;
    case JV_NONE: jsb_put(c, b, "None", 4); return;
    case JV_BOOL: v.u.b ? jsb_put(c, b, "True", 4) : jsb_put(c, b, "False", 5); return;
    case JV_INT: jsb_printf(c, b, "%lld", (long long)v.u.i); return;
    case JV_FLOAT: write_float(c, b, v.u.f, false); return;
    case JV_STR: jsb_put(c, b, v.u.s.p, v.u.s.n); return;
    case JV_LIST: jv_write_repr(c, b, v); return;
    case JV_DICT:
        if (v.u.d->kind == JD_PLAIN) jv_write_repr(c, b, v);
        else jsb_printf(c, b, "<%s>", jv_type_name(v));
        return;
    default: jsb_printf(c, b, "<%s>", jv_type_name(v)); return;
    }
}

jv jv_to_str(jctx *c, jv v) {
    if (v.t == JV_STR) return v;
    jsb b = {0};
    jv_write_str(c, &b, v);
    return jsb_take(&b);
}

static void write_json_str(jctx *c, jsb *b, const char *p, size_t n) {
    jsb_putc(c, b, '"');
    size_t run = 0;
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        const char *esc = NULL;
        switch (ch) {
        case '"': esc = "\\\""; break;
        case '\\': esc = "\\\\"; break;
        case '\n': esc = "\\n"; break;
        case '\r': esc = "\\r"; break;
        case '\t': esc = "\\t"; break;
        case '\b': esc = "\\b"; break;
        case '\f': esc = "\\f"; break;
        default: break;
        }
        if (!esc && ch >= 0x20) continue;
        jsb_put(c, b, p + run, i - run);
        run = i + 1;
        if (esc) jsb_put(c, b, esc, 2);
        else jsb_printf(c, b, "\\u%04x", ch);
    }
    jsb_put(c, b, p + run, n - run);
    jsb_putc(c, b, '"');
}

static void json_newline(jctx *c, jsb *b, int indent, int level) {
    jsb_putc(c, b, '\n');
    for (int i = 0; i < indent * level; i++) jsb_putc(c, b, ' ');
}

/* json.dumps(v, ensure_ascii=False, indent=indent (<0: none)) */
void jv_write_json(jctx *c, jsb *b, jv v, int indent, int level) {
    jx_step(c);
    if (level > c->max_depth) jx_fail(c, "tojson: value nested too deeply");
    switch (v.t) {
    case JV_NONE: jsb_put(c, b, "null", 4); return;
    case JV_BOOL: v.u.b ? jsb_put(c, b, "true", 4) : jsb_put(c, b, "false", 5); return;
    case JV_INT: jsb_printf(c, b, "%lld", (long long)v.u.i); return;
    case JV_FLOAT: write_float(c, b, v.u.f, true); return;
    case JV_STR: write_json_str(c, b, v.u.s.p, v.u.s.n); return;
    case JV_LIST:
        if (!v.u.l->n) { jsb_put(c, b, "[]", 2); return; }
        jsb_putc(c, b, '[');
        for (size_t i = 0; i < v.u.l->n; i++) {
            if (i) jsb_put(c, b, indent >= 0 ? "," : ", ", indent >= 0 ? 1 : 2);
            if (indent >= 0) json_newline(c, b, indent, level + 1);
            jv_write_json(c, b, v.u.l->v[i], indent, level + 1);
        }
        if (indent >= 0) json_newline(c, b, indent, level);
        jsb_putc(c, b, ']');
        return;
    case JV_DICT:
        if (v.u.d->kind != JD_PLAIN) break;
        if (!v.u.d->n) { jsb_put(c, b, "{}", 2); return; }
        jsb_putc(c, b, '{');
        for (size_t i = 0; i < v.u.d->n; i++) {
            jv k = v.u.d->k[i];
            if (i) jsb_put(c, b, indent >= 0 ? "," : ", ", indent >= 0 ? 1 : 2);
            if (indent >= 0) json_newline(c, b, indent, level + 1);
            if (k.t == JV_STR) write_json_str(c, b, k.u.s.p, k.u.s.n);
            else if (k.t == JV_NONE) jsb_put(c, b, "\"null\"", 6);
            else if (k.t == JV_BOOL) jsb_put(c, b, k.u.b ? "\"true\"" : "\"false\"", k.u.b ? 6 : 7);
            else if (k.t == JV_INT || k.t == JV_FLOAT) {
                jsb_putc(c, b, '"');
                jv_write_json(c, b, k, -1, level + 1);
                jsb_putc(c, b, '"');
            } else jx_fail(c, "tojson: keys must be str, int, float, bool or None, not %s", jv_type_name(k));
            jsb_put(c, b, ": ", 2);
            jv_write_json(c, b, v.u.d->v[i], indent, level + 1);
        }
        if (indent >= 0) json_newline(c, b, indent, level);
        jsb_putc(c, b, '}');
        return;
    default: break;
    }
    jx_fail(c, "tojson: Object of type %s is not JSON serializable", jv_type_name(v));
}

/* ---- UTF-8 code point helpers (Python strings index code points) ---- */
size_t utf8_len(const char *p, size_t n) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (((unsigned char)p[i] & 0xC0) != 0x80) k++;
    return k;
}

size_t utf8_offset(const char *p, size_t n, size_t cp) {
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (((unsigned char)p[i] & 0xC0) != 0x80) {
            if (k == cp) return i;
            k++;
        }
    }
    return n;
}
