/* Jinja method calls on strings, dicts, lists and the loop object, and the
 * globals Hugging Face provides (range, namespace, raise_exception,
 * strftime_now, dict). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "tok/jinja_int.h"

static bool is_space(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v'; }

static bool name_is(const char *a, const char *b) { return !strcmp(a, b); }

static jv str_arg(jctx *c, jargs *a, size_t i, const char *what) {
    jv v = jx_arg(a, i, NULL, jv_undef(NULL));
    if (v.t != JV_STR) jx_fail(c, "%s() argument must be str, not %s", what, jv_type_name(v));
    return v;
}

static bool affix(jv s, jv x, bool start) {
    if (x.u.s.n > s.u.s.n) return false;
    const char *p = start ? s.u.s.p : s.u.s.p + s.u.s.n - x.u.s.n;
    return memcmp(p, x.u.s.p, x.u.s.n) == 0;
}

static jv split(jctx *c, jv s, jv sep, int64_t maxsplit, bool from_right) {
    jv out = jv_newlist(c, 0);
    const char *p = s.u.s.p;
    size_t n = s.u.s.n;
    if (sep.t == JV_NONE || sep.t == JV_UNDEF) {   /* runs of whitespace, no empty parts */
        jv parts = jv_newlist(c, 0);
        size_t i = 0;
        if (!from_right) {
            while (i < n) {
                while (i < n && is_space(p[i])) i++;
                if (i >= n) break;
                if (maxsplit >= 0 && (int64_t)parts.u.l->n == maxsplit) {
                    size_t e = n;
                    while (e > i && is_space(p[e - 1])) e--;
                    jv_list_push(c, parts.u.l, jv_str(p + i, e - i));
                    break;
                }
                size_t b = i;
                while (i < n && !is_space(p[i])) i++;
                jv_list_push(c, parts.u.l, jv_str(p + b, i - b));
            }
            return parts;
        }
        size_t e = n;
        while (e > 0) {
            while (e > 0 && is_space(p[e - 1])) e--;
            if (!e) break;
            if (maxsplit >= 0 && (int64_t)parts.u.l->n == maxsplit) {
                size_t b = 0;
                while (b < e && is_space(p[b])) b++;
                jv_list_push(c, parts.u.l, jv_str(p + b, e - b));
                break;
            }
            size_t b = e;
            while (b > 0 && !is_space(p[b - 1])) b--;
            jv_list_push(c, parts.u.l, jv_str(p + b, e - b));
            e = b;
        }
        for (size_t i2 = parts.u.l->n; i2-- > 0;) jv_list_push(c, out.u.l, parts.u.l->v[i2]);
        return out;
    }
    if (sep.t != JV_STR) jx_fail(c, "split() separator must be str");
    if (!sep.u.s.n) jx_fail(c, "empty separator");
    if (!from_right) {
        size_t i = 0;
        int64_t k = 0;
        for (;;) {
            const char *f = (maxsplit < 0 || k < maxsplit) ? memmem(p + i, n - i, sep.u.s.p, sep.u.s.n) : NULL;
            if (!f) break;
            jv_list_push(c, out.u.l, jv_str(p + i, (size_t)(f - (p + i))));
            i = (size_t)(f - p) + sep.u.s.n;
            k++;
        }
        jv_list_push(c, out.u.l, jv_str(p + i, n - i));
        return out;
    }
    jv rev = jv_newlist(c, 0);
    size_t e = n;
    int64_t k = 0;
    while (maxsplit < 0 || k < maxsplit) {
        size_t found = (size_t)-1;
        for (size_t j = e >= sep.u.s.n ? e - sep.u.s.n + 1 : 0; j-- > 0;)
            if (!memcmp(p + j, sep.u.s.p, sep.u.s.n)) { found = j; break; }
        if (found == (size_t)-1) break;
        jv_list_push(c, rev.u.l, jv_str(p + found + sep.u.s.n, e - found - sep.u.s.n));
        e = found;
        k++;
    }
    jv_list_push(c, rev.u.l, jv_str(p, e));
    for (size_t i = rev.u.l->n; i-- > 0;) jv_list_push(c, out.u.l, rev.u.l->v[i]);
    return out;
}

/* "{} {0} {name}" with {{ and }} escapes; no format specs. */
static jv format(jctx *c, jv s, jargs *a) {
    jsb b = {0};
    size_t auto_i = 0;
    for (size_t i = 0; i < s.u.s.n; i++) {
        char ch = s.u.s.p[i];
        if ((ch == '{' || ch == '}') && i + 1 < s.u.s.n && s.u.s.p[i + 1] == ch) {
            jsb_putc(c, &b, ch);
            i++;
            continue;
        }
        if (ch == '}') jx_fail(c, "format: single '}' encountered");
        if (ch != '{') { jsb_putc(c, &b, ch); continue; }
        size_t e = i + 1;
        while (e < s.u.s.n && s.u.s.p[e] != '}') e++;
        if (e >= s.u.s.n) jx_fail(c, "format: unmatched '{'");
        const char *f = s.u.s.p + i + 1;
        size_t fn = e - i - 1;
        if (memchr(f, ':', fn) || memchr(f, '!', fn) || memchr(f, '.', fn) || memchr(f, '[', fn))
            jx_fail(c, "format: only plain {} / {n} / {name} fields are supported");
        jv v;
        if (!fn) {
            if (auto_i >= a->n_pos) jx_fail(c, "format: not enough arguments");
            v = a->pos[auto_i++];
        } else if (f[0] >= '0' && f[0] <= '9') {
            size_t k = (size_t)strtoul(f, NULL, 10);
            if (k >= a->n_pos) jx_fail(c, "format: index %zu out of range", k);
            v = a->pos[k];
        } else {
            char *key = ja_strdup(c->a, f, fn);
            v = jx_arg(a, (size_t)-1, key, jv_undef(NULL));
            if (v.t == JV_UNDEF) jx_fail(c, "format: missing argument '%s'", key);
        }
        jv_write_str(c, &b, v);
        i = e;
    }
    return jsb_take(&b);
}

static int64_t find(jv s, jv sub, bool from_right) {
    if (sub.u.s.n > s.u.s.n) return -1;
    size_t hit = (size_t)-1;
    if (!from_right) {
        const char *f = sub.u.s.n ? memmem(s.u.s.p, s.u.s.n, sub.u.s.p, sub.u.s.n) : s.u.s.p;
        if (f) hit = (size_t)(f - s.u.s.p);
    } else {
        for (size_t j = s.u.s.n - sub.u.s.n + 1; j-- > 0;)
            if (!memcmp(s.u.s.p + j, sub.u.s.p, sub.u.s.n)) { hit = j; break; }
    }
    return hit == (size_t)-1 ? -1 : (int64_t)utf8_len(s.u.s.p, hit);
}

static bool str_method(jctx *c, jv s, const char *m, jargs *a, jv *out) {
    if (name_is(m, "startswith") || name_is(m, "endswith")) {
        jv x = jx_arg(a, 0, NULL, jv_undef(NULL));
        bool start = m[0] == 's', r = false;
        if (x.t == JV_LIST) {
            for (size_t i = 0; i < x.u.l->n; i++)
                if (x.u.l->v[i].t == JV_STR && affix(s, x.u.l->v[i], start)) r = true;
        } else {
            r = affix(s, str_arg(c, a, 0, m), start);
        }
        *out = jv_bool(r);
        return true;
    }
    if (name_is(m, "split") || name_is(m, "rsplit")) {
        jv ms = jx_arg(a, 1, "maxsplit", jv_int(-1));
        *out = split(c, s, jx_arg(a, 0, "sep", jv_none()), ms.t == JV_INT ? ms.u.i : -1, m[0] == 'r');
        return true;
    }
    if (name_is(m, "strip") || name_is(m, "lstrip") || name_is(m, "rstrip")) {
        jv chars = jx_arg(a, 0, NULL, jv_none());
        *out = jx_strip(c, s, chars, m[0] != 'r', m[0] != 'l');
        return true;
    }
    if (name_is(m, "replace")) {
        jv cnt = jx_arg(a, 2, NULL, jv_int(-1));
        *out = jx_str_replace(c, s, str_arg(c, a, 0, m), str_arg(c, a, 1, m), cnt.t == JV_INT ? cnt.u.i : -1);
        return true;
    }
    if (name_is(m, "upper") || name_is(m, "lower") || name_is(m, "title") || name_is(m, "capitalize")) {
        *out = jx_filter(c, m, s, &(jargs){0});
        return true;
    }
    if (name_is(m, "find") || name_is(m, "rfind") || name_is(m, "index") || name_is(m, "rindex")) {
        int64_t r = find(s, str_arg(c, a, 0, m), m[0] == 'r');
        if (r < 0 && (m[0] == 'i' || m[1] == 'i')) jx_fail(c, "substring not found");
        *out = jv_int(r);
        return true;
    }
    if (name_is(m, "count")) {
        jv sub = str_arg(c, a, 0, m);
        int64_t k = 0;
        if (!sub.u.s.n) k = (int64_t)utf8_len(s.u.s.p, s.u.s.n) + 1;
        else for (size_t i = 0; i + sub.u.s.n <= s.u.s.n;) {
            if (!memcmp(s.u.s.p + i, sub.u.s.p, sub.u.s.n)) { k++; i += sub.u.s.n; } else i++;
        }
        *out = jv_int(k);
        return true;
    }
    if (name_is(m, "join")) {
        jargs ja = {&s, 1, NULL, NULL, 0};
        *out = jx_filter(c, "join", jx_arg(a, 0, NULL, jv_undef(NULL)), &ja);
        return true;
    }
    if (name_is(m, "format")) { *out = format(c, s, a); return true; }
    if (name_is(m, "splitlines")) {
        jv r = jv_newlist(c, 0);
        size_t i = 0;
        while (i < s.u.s.n) {
            size_t e = i;
            while (e < s.u.s.n && s.u.s.p[e] != '\n' && s.u.s.p[e] != '\r') e++;
            jv_list_push(c, r.u.l, jv_str(s.u.s.p + i, e - i));
            if (e + 1 < s.u.s.n && s.u.s.p[e] == '\r' && s.u.s.p[e + 1] == '\n') e++;
            i = e + 1;
        }
        *out = r;
        return true;
    }
    if (name_is(m, "isdigit") || name_is(m, "isalpha") || name_is(m, "isspace") || name_is(m, "isalnum")) {
        bool r = s.u.s.n > 0;
        for (size_t i = 0; i < s.u.s.n && r; i++) {
            char ch = s.u.s.p[i];
            bool d = ch >= '0' && ch <= '9', al = (ch | 32) >= 'a' && (ch | 32) <= 'z';
            r = m[2] == 'd' ? d : m[2] == 's' ? is_space(ch) : m[4] == 'n' ? d || al : al;
        }
        *out = jv_bool(r);
        return true;
    }
    return false;
}

bool jx_method(jctx *c, jv obj, const char *m, jargs *a, jv *out) {
    jx_step(c);
    if (obj.t == JV_STR) return str_method(c, obj, m, a, out);
    if (obj.t == JV_DICT && obj.u.d->kind == JD_LOOP) {
        if (name_is(m, "cycle")) {
            if (!a->n_pos) jx_fail(c, "no items for cycling given");
            jv *idx = jv_dict_get(obj.u.d, "index0", 6);
            *out = a->pos[(size_t)(idx && idx->t == JV_INT ? idx->u.i : 0) % a->n_pos];
            return true;
        }
        return false;
    }
    if (obj.t == JV_DICT && obj.u.d->kind == JD_PLAIN) {
        jdict *d = obj.u.d;
        if (name_is(m, "items")) { *out = jx_filter(c, "items", obj, &(jargs){0}); return true; }
        if (name_is(m, "keys") || name_is(m, "values")) {
            jv r = jv_newlist(c, d->n);
            for (size_t i = 0; i < d->n; i++) jv_list_push(c, r.u.l, m[0] == 'k' ? d->k[i] : d->v[i]);
            *out = r;
            return true;
        }
        if (name_is(m, "get")) {
            jv *v = jv_dict_getv(d, jx_arg(a, 0, NULL, jv_undef(NULL)));
            *out = v ? *v : jx_arg(a, 1, NULL, jv_none());
            return true;
        }
        if (name_is(m, "copy")) {
            jv r = jv_newdict(c, JD_PLAIN);
            for (size_t i = 0; i < d->n; i++) jv_dict_set(c, r.u.d, d->k[i], d->v[i]);
            *out = r;
            return true;
        }
        return false;
    }
    if (obj.t == JV_LIST) {
        jlist *l = obj.u.l;
        if (name_is(m, "append")) {
            jv_list_push(c, l, jx_arg(a, 0, NULL, jv_none()));
            *out = jv_none();
            return true;
        }
        if (name_is(m, "extend")) {
            jv x = jx_arg(a, 0, NULL, jv_none());
            if (x.t != JV_LIST) jx_fail(c, "extend() expects a list");
            size_t n = x.u.l->n;
            for (size_t i = 0; i < n; i++) jv_list_push(c, l, x.u.l->v[i]);
            *out = jv_none();
            return true;
        }
        if (name_is(m, "index") || name_is(m, "count")) {
            jv x = jx_arg(a, 0, NULL, jv_none());
            int64_t k = 0, at = -1;
            for (size_t i = 0; i < l->n; i++)
                if (jv_eq(l->v[i], x)) { k++; if (at < 0) at = (int64_t)i; }
            if (m[0] == 'i' && at < 0) jx_fail(c, "value is not in list");
            *out = jv_int(m[0] == 'i' ? at : k);
            return true;
        }
        return false;
    }
    if (obj.t == JV_UNDEF) {
        if (obj.u.s.p) jx_fail(c, "'%s' is undefined", obj.u.s.p);
        jx_fail(c, "has no attribute '%s' (the value is undefined)", m);
    }
    return false;
}

int jx_builtin_id(const char *name, size_t n) {
    static const struct { const char *s; int id; } T[] = {
        {"range", JF_RANGE}, {"namespace", JF_NAMESPACE}, {"raise_exception", JF_RAISE},
        {"strftime_now", JF_STRFTIME}, {"dict", JF_DICT}};
    for (size_t i = 0; i < sizeof T / sizeof *T; i++)
        if (strlen(T[i].s) == n && !memcmp(T[i].s, name, n)) return T[i].id;
    return 0;
}

jv jx_builtin(jctx *c, int id, jargs *a) {
    switch (id) {
    case JF_RANGE: {
        int64_t v[3] = {0, 0, 1};
        if (a->n_pos < 1 || a->n_pos > 3) jx_fail(c, "range expected 1 to 3 arguments");
        for (size_t i = 0; i < a->n_pos; i++) {
            if (a->pos[i].t != JV_INT && a->pos[i].t != JV_BOOL) jx_fail(c, "range() arguments must be integers");
            int64_t x = a->pos[i].t == JV_INT ? a->pos[i].u.i : a->pos[i].u.b;
            if (a->n_pos == 1) v[1] = x;
            else v[i] = x;
        }
        if (!v[2]) jx_fail(c, "range() arg 3 must not be zero");
        double cnt = v[2] > 0 ? ((double)v[1] - (double)v[0]) / (double)v[2]
                              : ((double)v[0] - (double)v[1]) / (double)-v[2];
        if (cnt > 100000)   /* Jinja's sandbox MAX_RANGE */
            ja_fail(c->a, TS_ERR_CAPACITY, c->line, "range too big (more than 100000 items)");
        jv r = jv_newlist(c, 0);
        for (int64_t x = v[0]; v[2] > 0 ? x < v[1] : x > v[1]; x += v[2]) {
            jx_step(c);
            jv_list_push(c, r.u.l, jv_int(x));
        }
        return r;
    }
    case JF_NAMESPACE: case JF_DICT: {
        jv d = jv_newdict(c, id == JF_NAMESPACE ? JD_NAMESPACE : JD_PLAIN);
        if (a->n_pos > 1 || (a->n_pos == 1 && a->pos[0].t != JV_DICT))
            jx_fail(c, "%s() takes keyword arguments or one mapping", id == JF_DICT ? "dict" : "namespace");
        if (a->n_pos)
            for (size_t i = 0; i < a->pos[0].u.d->n; i++)
                jv_dict_set(c, d.u.d, a->pos[0].u.d->k[i], a->pos[0].u.d->v[i]);
        for (size_t i = 0; i < a->n_kw; i++) jv_dict_set(c, d.u.d, jv_cstr(a->kw[i]), a->kwv[i]);
        return d;
    }
    case JF_RAISE: {
        jv m = jv_to_str(c, jx_arg(a, 0, NULL, jv_str("", 0)));
        ja_fail(c->a, TS_ERR_INVALID, c->line, "%.*s", (int)(m.u.s.n > 300 ? 300 : m.u.s.n), m.u.s.p);
    }
    case JF_STRFTIME: {
        jv f = jx_arg(a, 0, NULL, jv_undef(NULL));
        if (f.t != JV_STR) jx_fail(c, "strftime_now() expects a format string");
        char *fmt = ja_strdup(c->a, f.u.s.p, f.u.s.n), buf[512];
        time_t now = time(NULL);
        struct tm tm;
        localtime_r(&now, &tm);
        size_t n = strftime(buf, sizeof buf, fmt, &tm);
        char *s = ja_strdup(c->a, buf, n);
        return jv_str(s, n);
    }
    default: jx_fail(c, "internal: unknown builtin");
    }
}
