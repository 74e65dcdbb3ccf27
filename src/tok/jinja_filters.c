/* Jinja filters and tests (the ones Hugging Face chat templates use),
 * with Jinja2's argument names and defaults. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>
#include "tok/jinja_int.h"

jv jx_arg(jargs *a, size_t pos, const char *kw, jv dflt) {
    if (pos < a->n_pos) return a->pos[pos];
    for (size_t i = 0; kw && i < a->n_kw; i++)
        if (!strcmp(a->kw[i], kw)) return a->kwv[i];
    return dflt;
}

static bool is_space(char ch) { return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r' || ch == '\f' || ch == '\v'; }

static jv need_str(jctx *c, jv v, const char *what) {
    if (v.t != JV_STR) jx_fail(c, "%s expects a string, got %s", what, jv_type_name(v));
    return v;
}

/* Maps each code point through fn (utf8proc_toupper / tolower). */
static jv map_case(jctx *c, jv s, int mode /* 0 lower, 1 upper, 2 capitalize, 3 title */) {
    jsb b = {0};
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s.u.s.p;
    utf8proc_ssize_t n = (utf8proc_ssize_t)s.u.s.n, i = 0;
    bool word_start = true, first = true;
    while (i < n) {
        utf8proc_int32_t cp;
        utf8proc_ssize_t k = utf8proc_iterate(p + i, n - i, &cp);
        if (k <= 0) { jsb_putc(c, &b, (char)p[i]); i++; continue; }
        bool up = mode == 1 || (mode == 2 && first) || (mode == 3 && word_start);
        utf8proc_int32_t o = up ? utf8proc_toupper(cp) : utf8proc_tolower(cp);
        utf8proc_uint8_t enc[4];
        jsb_put(c, &b, (const char *)enc, (size_t)utf8proc_encode_char(o, enc));
        /* Jinja's title(): words start after whitespace or one of -({[< */
        word_start = cp < 128 && (is_space((char)cp) || strchr("-({[<", (int)cp));
        first = false;
        i += k;
    }
    return jsb_take(&b);
}

jv jx_strip(jctx *c, jv s, jv chars, bool left, bool right) {
    const char *p = s.u.s.p;
    size_t b = 0, e = s.u.s.n;
    if (chars.t == JV_STR) {   /* ASCII character set; multi-byte sets match bytes */
        while (left && b < e && memchr(chars.u.s.p, p[b], chars.u.s.n)) b++;
        while (right && e > b && memchr(chars.u.s.p, p[e - 1], chars.u.s.n)) e--;
    } else {
        while (left && b < e && is_space(p[b])) b++;
        while (right && e > b && is_space(p[e - 1])) e--;
    }
    (void)c;
    return jv_str(p + b, e - b);
}

static jv to_list(jctx *c, jv v) {
    if (v.t == JV_LIST) return v;
    jv l = jv_newlist(c, 0);
    if (v.t == JV_DICT && v.u.d->kind == JD_PLAIN) {
        for (size_t i = 0; i < v.u.d->n; i++) jv_list_push(c, l.u.l, v.u.d->k[i]);
    } else if (v.t == JV_STR) {
        for (size_t i = 0; i < v.u.s.n;) {
            size_t k = 1;
            while (i + k < v.u.s.n && ((unsigned char)v.u.s.p[i + k] & 0xC0) == 0x80) k++;
            jv_list_push(c, l.u.l, jv_str(v.u.s.p + i, k));
            i += k;
        }
    } else if (v.t != JV_UNDEF) {
        jx_fail(c, "'%s' object is not iterable", jv_type_name(v));
    }
    return l;
}

/* attribute="a.b" or an integer index path, as Jinja's make_attrgetter */
static jv get_path(jctx *c, jv v, jv attr) {
    if (attr.t == JV_INT) return jx_getitem(c, v, attr);
    if (attr.t != JV_STR) jx_fail(c, "attribute must be a string");
    const char *p = attr.u.s.p, *end = p + attr.u.s.n;
    while (p <= end) {
        const char *dot = memchr(p, '.', (size_t)(end - p));
        if (!dot) dot = end;
        char *e;
        long long idx = strtoll(p, &e, 10);
        if (e == dot && dot > p) v = jx_getitem(c, v, jv_int(idx));
        else v = jx_getitem(c, v, jv_str(p, (size_t)(dot - p)));
        p = dot + 1;
    }
    return v;
}

static jv lower_if(jctx *c, jv v, bool fold) {
    return fold && v.t == JV_STR ? map_case(c, v, 0) : v;
}

static void merge_sort(jctx *c, jv *v, jv *key, size_t n, jv *tmpv, jv *tmpk, bool rev) {
    if (n < 2) return;
    size_t h = n / 2;
    merge_sort(c, v, key, h, tmpv, tmpk, rev);
    merge_sort(c, v + h, key + h, n - h, tmpv, tmpk, rev);
    size_t i = 0, j = h, o = 0;
    while (i < h || j < n) {
        bool take_left = j >= n || (i < h && (rev ? jv_cmp(c, key[j], key[i]) <= 0
                                                  : jv_cmp(c, key[i], key[j]) <= 0));
        if (take_left) { tmpv[o] = v[i]; tmpk[o++] = key[i++]; }
        else { tmpv[o] = v[j]; tmpk[o++] = key[j++]; }
    }
    memcpy(v, tmpv, n * sizeof *v);
    memcpy(key, tmpk, n * sizeof *key);
}

static jv str_replace(jctx *c, jv s, jv old, jv new_, int64_t count) {
    need_str(c, old, "replace");
    jv ns = jv_to_str(c, new_);
    jsb b = {0};
    size_t i = 0;
    int64_t done = 0;
    if (!old.u.s.n) {   /* Python inserts new between every character */
        for (size_t k = 0; k <= s.u.s.n; k++) {
            if (count < 0 || done < count) { jsb_put(c, &b, ns.u.s.p, ns.u.s.n); done++; }
            if (k < s.u.s.n) jsb_putc(c, &b, s.u.s.p[k]);
        }
        return jsb_take(&b);
    }
    while (i < s.u.s.n) {
        const char *f = (count < 0 || done < count)
                            ? memmem(s.u.s.p + i, s.u.s.n - i, old.u.s.p, old.u.s.n) : NULL;
        if (!f) break;
        size_t at = (size_t)(f - s.u.s.p);
        jsb_put(c, &b, s.u.s.p + i, at - i);
        jsb_put(c, &b, ns.u.s.p, ns.u.s.n);
        i = at + old.u.s.n;
        done++;
    }
    jsb_put(c, &b, s.u.s.p + i, s.u.s.n - i);
    return jsb_take(&b);
}
jv jx_str_replace(jctx *c, jv s, jv old, jv new_, int64_t count) { return str_replace(c, s, old, new_, count); }

static double py_round(double x, int64_t prec) {
    double m = pow(10.0, (double)prec);
    double y = x * m, r = nearbyint(y);   /* round half to even, as Python */
    if (!isfinite(r / m)) return x;
    return r / m;
}

static jv select_impl(jctx *c, jv seq, jargs *a, bool by_attr, bool keep) {
    jv l = to_list(c, seq), out = jv_newlist(c, 0);
    size_t first_test = by_attr ? 1 : 0;
    jv attr = by_attr ? jx_arg(a, 0, NULL, jv_undef(NULL)) : jv_none();
    const char *test = NULL;
    if (a->n_pos > first_test) {
        jv t = need_str(c, a->pos[first_test], "select test name");
        test = ja_strdup(c->a, t.u.s.p, t.u.s.n);
    }
    jargs ta = {a->pos + (a->n_pos > first_test ? first_test + 1 : a->n_pos),
                a->n_pos > first_test + 1 ? a->n_pos - first_test - 1 : 0, NULL, NULL, 0};
    for (size_t i = 0; i < l.u.l->n; i++) {
        jv item = l.u.l->v[i], x = by_attr ? get_path(c, item, attr) : item;
        bool r = test ? jx_test(c, test, x, &ta) : jv_truthy(x);
        if (r == keep) jv_list_push(c, out.u.l, item);
    }
    return out;
}

static const char *const FILTERS[] = {
    "abs", "capitalize", "count", "d", "default", "e", "escape", "first", "float", "indent",
    "int", "items", "join", "last", "length", "list", "lower", "map", "max", "min", "reject",
    "rejectattr", "replace", "reverse", "round", "safe", "select", "selectattr", "sort",
    "string", "sum", "title", "tojson", "trim", "unique", "upper", "dictsort", "wordcount", NULL};

bool jx_filter_known(const char *name) {
    for (size_t i = 0; FILTERS[i]; i++)
        if (!strcmp(FILTERS[i], name)) return true;
    return false;
}

jv jx_filter(jctx *c, const char *name, jv v, jargs *a) {
    jx_step(c);
    if (!strcmp(name, "default") || !strcmp(name, "d")) {
        bool boolean = jv_truthy(jx_arg(a, 1, "boolean", jv_bool(false)));
        if (v.t == JV_UNDEF || (boolean && !jv_truthy(v))) return jx_arg(a, 0, "default_value", jv_str("", 0));
        return v;
    }
    if (!strcmp(name, "length") || !strcmp(name, "count")) {
        if (v.t == JV_STR) return jv_int((int64_t)utf8_len(v.u.s.p, v.u.s.n));
        if (v.t == JV_LIST) return jv_int((int64_t)v.u.l->n);
        if (v.t == JV_DICT) return jv_int((int64_t)v.u.d->n);
        if (v.t == JV_UNDEF) return jv_int(0);
        jx_fail(c, "object of type '%s' has no len()", jv_type_name(v));
    }
    if (!strcmp(name, "safe")) return v;
    if (!strcmp(name, "string")) return jv_to_str(c, v);
    if (!strcmp(name, "tojson")) {
        jv ind = jx_arg(a, 0, "indent", jv_none());
        jsb b = {0};
        jv_write_json(c, &b, v, ind.t == JV_INT ? (int)(ind.u.i < 0 ? 0 : ind.u.i > 64 ? 64 : ind.u.i) : -1, 0);
        return jsb_take(&b);
    }
    if (!strcmp(name, "trim")) return jx_strip(c, jv_to_str(c, v), jx_arg(a, 0, "chars", jv_none()), true, true);
    if (!strcmp(name, "upper")) return map_case(c, jv_to_str(c, v), 1);
    if (!strcmp(name, "lower")) return map_case(c, jv_to_str(c, v), 0);
    if (!strcmp(name, "capitalize")) return map_case(c, jv_to_str(c, v), 2);
    if (!strcmp(name, "title")) return map_case(c, jv_to_str(c, v), 3);
    if (!strcmp(name, "int") || !strcmp(name, "float")) {
        bool is_int = name[0] == 'i';
        jv dflt = jx_arg(a, 0, "default", is_int ? jv_int(0) : jv_float(0.0));
        double f = 0;
        if (v.t == JV_INT || v.t == JV_BOOL) f = jv_num(v);
        else if (v.t == JV_FLOAT) f = v.u.f;
        else if (v.t == JV_STR) {
            char *tmp = ja_strdup(c->a, v.u.s.p, v.u.s.n), *e;
            while (is_space(*tmp)) tmp++;
            if (is_int) {
                long long x = strtoll(tmp, &e, 10);
                while (is_space(*e)) e++;
                if (*e == 0 && e != tmp) return jv_int(x);
            }
            f = strtod(tmp, &e);
            while (is_space(*e)) e++;
            if (*e || e == tmp) return dflt;
        } else {
            return dflt;
        }
        if (!is_int) return jv_float(f);
        if (!isfinite(f) || fabs(f) >= 9.2e18) return dflt;
        return jv_int((int64_t)f);
    }
    if (!strcmp(name, "abs")) {
        if (v.t == JV_INT) {
            if (v.u.i == INT64_MIN) jx_fail(c, "integer overflow");
            return jv_int(v.u.i < 0 ? -v.u.i : v.u.i);
        }
        if (v.t == JV_BOOL) return jv_int(v.u.b);
        if (v.t == JV_FLOAT) return jv_float(fabs(v.u.f));
        jx_fail(c, "bad operand type for abs(): '%s'", jv_type_name(v));
    }
    if (!strcmp(name, "round")) {
        jv p = jx_arg(a, 0, "precision", jv_int(0));
        jv m = jx_arg(a, 1, "method", jv_cstr("common"));
        if (!jv_is_num(v)) jx_fail(c, "round expects a number, got %s", jv_type_name(v));
        int64_t prec = p.t == JV_INT ? p.u.i : 0;
        if (prec > 300) prec = 300;
        if (prec < -300) prec = -300;
        double x = jv_num(v), mult = pow(10.0, (double)prec);
        if (m.t == JV_STR && m.u.s.n == 4 && !memcmp(m.u.s.p, "ceil", 4)) return jv_float(ceil(x * mult) / mult);
        if (m.t == JV_STR && m.u.s.n == 5 && !memcmp(m.u.s.p, "floor", 5)) return jv_float(floor(x * mult) / mult);
        if (v.t != JV_FLOAT) return v;
        return jv_float(py_round(x, prec));
    }
    if (!strcmp(name, "list")) {
        jv l = to_list(c, v);
        if (l.u.l == v.u.l) {   /* a copy */
            jv r = jv_newlist(c, l.u.l->n);
            for (size_t i = 0; i < l.u.l->n; i++) jv_list_push(c, r.u.l, l.u.l->v[i]);
            return r;
        }
        return l;
    }
    if (!strcmp(name, "items") || !strcmp(name, "dictsort")) {
        jv r = jv_newlist(c, 0);
        if (v.t == JV_UNDEF) return r;
        if (v.t != JV_DICT) jx_fail(c, "%s expects a mapping, got %s", name, jv_type_name(v));
        for (size_t i = 0; i < v.u.d->n; i++) {
            jv t = jv_newlist(c, 2);
            t.u.l->kind = JL_TUPLE;
            jv_list_push(c, t.u.l, v.u.d->k[i]);
            jv_list_push(c, t.u.l, v.u.d->v[i]);
            jv_list_push(c, r.u.l, t);
        }
        if (name[0] == 'd') {
            jargs sa = {0};
            const char *kw = "attribute";
            jv zero = jv_int(0);
            sa.kw = &kw; sa.kwv = &zero; sa.n_kw = 1;
            return jx_filter(c, "sort", r, &sa);
        }
        return r;
    }
    if (!strcmp(name, "first") || !strcmp(name, "last")) {
        jv l = to_list(c, v);
        if (!l.u.l->n) return jv_undef(NULL);
        return name[0] == 'f' ? l.u.l->v[0] : l.u.l->v[l.u.l->n - 1];
    }
    if (!strcmp(name, "reverse")) {
        jv l = to_list(c, v), r = jv_newlist(c, l.u.l->n);
        for (size_t i = l.u.l->n; i-- > 0;) jv_list_push(c, r.u.l, l.u.l->v[i]);
        if (v.t != JV_STR) return r;
        jsb b = {0};
        for (size_t i = 0; i < r.u.l->n; i++) jsb_put(c, &b, r.u.l->v[i].u.s.p, r.u.l->v[i].u.s.n);
        return jsb_take(&b);
    }
    if (!strcmp(name, "join")) {
        jv sep = jx_arg(a, 0, "d", jv_str("", 0)), attr = jx_arg(a, 1, "attribute", jv_none());
        jv l = to_list(c, v);
        jsb b = {0};
        for (size_t i = 0; i < l.u.l->n; i++) {
            if (i) jv_write_str(c, &b, sep);
            jv_write_str(c, &b, attr.t == JV_NONE ? l.u.l->v[i] : get_path(c, l.u.l->v[i], attr));
        }
        return jsb_take(&b);
    }
    if (!strcmp(name, "map")) {
        jv l = to_list(c, v), r = jv_newlist(c, l.u.l->n);
        jv attr = jx_arg(a, 99, "attribute", jv_undef(NULL));
        if (attr.t != JV_UNDEF) {
            jv dflt = jx_arg(a, 99, "default", jv_undef(NULL));
            for (size_t i = 0; i < l.u.l->n; i++) {
                jv x = get_path(c, l.u.l->v[i], attr);
                jv_list_push(c, r.u.l, x.t == JV_UNDEF && dflt.t != JV_UNDEF ? dflt : x);
            }
            return r;
        }
        if (!a->n_pos) jx_fail(c, "map needs a filter name or attribute=");
        jv fname = need_str(c, a->pos[0], "map filter name");
        const char *fn = ja_strdup(c->a, fname.u.s.p, fname.u.s.n);
        if (!jx_filter_known(fn)) jx_fail(c, "no filter named '%s'", fn);
        jargs fa = {a->pos + 1, a->n_pos - 1, a->kw, a->kwv, a->n_kw};
        for (size_t i = 0; i < l.u.l->n; i++) jv_list_push(c, r.u.l, jx_filter(c, fn, l.u.l->v[i], &fa));
        return r;
    }
    if (!strcmp(name, "selectattr")) return select_impl(c, v, a, true, true);
    if (!strcmp(name, "rejectattr")) return select_impl(c, v, a, true, false);
    if (!strcmp(name, "select")) return select_impl(c, v, a, false, true);
    if (!strcmp(name, "reject")) return select_impl(c, v, a, false, false);
    if (!strcmp(name, "replace")) {
        jv s = jv_to_str(c, v);
        jv cnt = jx_arg(a, 2, "count", jv_none());
        return str_replace(c, s, jx_arg(a, 0, "old", jv_undef(NULL)), jx_arg(a, 1, "new", jv_undef(NULL)),
                           cnt.t == JV_INT ? cnt.u.i : -1);
    }
    if (!strcmp(name, "indent")) {
        jv w = jx_arg(a, 0, "width", jv_int(4));
        bool first = jv_truthy(jx_arg(a, 1, "first", jv_bool(false)));
        bool blank = jv_truthy(jx_arg(a, 2, "blank", jv_bool(false)));
        jsb ind = {0};
        if (w.t == JV_STR) jsb_put(c, &ind, w.u.s.p, w.u.s.n);
        else for (int64_t i = 0; w.t == JV_INT && i < w.u.i && i < 1000; i++) jsb_putc(c, &ind, ' ');
        jv s = jv_to_str(c, v);
        jsb b = {0};
        if (first) jsb_put(c, &b, ind.p, ind.n);
        /* Jinja appends "\n" and then uses splitlines(): a trailing newline survives */
        size_t i = 0, line = 0;
        while (i <= s.u.s.n) {
            size_t e = i;
            while (e < s.u.s.n && s.u.s.p[e] != '\n' && s.u.s.p[e] != '\r') e++;
            if (line) {
                jsb_putc(c, &b, '\n');
                if (blank || e > i) jsb_put(c, &b, ind.p, ind.n);
            }
            jsb_put(c, &b, s.u.s.p + i, e - i);
            if (e < s.u.s.n && s.u.s.p[e] == '\r' && e + 1 < s.u.s.n && s.u.s.p[e + 1] == '\n') e++;
            i = e + 1;
            line++;
        }
        return jsb_take(&b);
    }
    if (!strcmp(name, "sort") || !strcmp(name, "unique") || !strcmp(name, "min") || !strcmp(name, "max")) {
        bool is_sort = name[0] == 's';
        bool rev = is_sort && jv_truthy(jx_arg(a, 0, "reverse", jv_bool(false)));
        bool cs = jv_truthy(jx_arg(a, is_sort ? 1 : 0, "case_sensitive", jv_bool(false)));
        jv attr = jx_arg(a, is_sort ? 2 : 1, "attribute", jv_none());
        jv l = to_list(c, v);
        size_t n = l.u.l->n;
        jv *items = ja_alloc(c->a, (n + 1) * sizeof *items), *keys = ja_alloc(c->a, (n + 1) * sizeof *keys);
        for (size_t i = 0; i < n; i++) {
            items[i] = l.u.l->v[i];
            keys[i] = lower_if(c, attr.t == JV_NONE ? items[i] : get_path(c, items[i], attr), !cs);
        }
        jv r = jv_newlist(c, n);
        if (name[0] == 'u') {
            for (size_t i = 0; i < n; i++) {
                bool seen = false;
                for (size_t j = 0; j < i && !seen; j++) seen = jv_eq(keys[i], keys[j]);
                if (!seen) jv_list_push(c, r.u.l, items[i]);
            }
            return r;
        }
        if (!is_sort) {
            if (!n) return jv_undef(NULL);
            size_t best = 0;
            for (size_t i = 1; i < n; i++) {
                int cmp = jv_cmp(c, keys[i], keys[best]);
                if (name[1] == 'i' ? cmp < 0 : cmp > 0) best = i;
            }
            return items[best];
        }
        jv *tv = ja_alloc(c->a, (n + 1) * sizeof *tv), *tk = ja_alloc(c->a, (n + 1) * sizeof *tk);
        merge_sort(c, items, keys, n, tv, tk, rev);
        for (size_t i = 0; i < n; i++) jv_list_push(c, r.u.l, items[i]);
        return r;
    }
    if (!strcmp(name, "sum")) {
        jv attr = jx_arg(a, 0, "attribute", jv_none()), acc = jx_arg(a, 1, "start", jv_int(0));
        jv l = to_list(c, v);
        for (size_t i = 0; i < l.u.l->n; i++) {
            jv x = attr.t == JV_NONE ? l.u.l->v[i] : get_path(c, l.u.l->v[i], attr);
            if (!jv_is_num(x) || !jv_is_num(acc)) jx_fail(c, "sum expects numbers");
            if (acc.t != JV_FLOAT && x.t != JV_FLOAT) {
                int64_t r;
                if (__builtin_add_overflow((int64_t)jv_num(acc), (int64_t)jv_num(x), &r)) jx_fail(c, "integer overflow");
                acc = jv_int(r);
            } else {
                acc = jv_float(jv_num(acc) + jv_num(x));
            }
        }
        return acc;
    }
    if (!strcmp(name, "escape") || !strcmp(name, "e")) {
        jv s = jv_to_str(c, v);
        jsb b = {0};
        for (size_t i = 0; i < s.u.s.n; i++) {
            char ch = s.u.s.p[i];
            if (ch == '&') jsb_put(c, &b, "&amp;", 5);
            else if (ch == '<') jsb_put(c, &b, "&lt;", 4);
            else if (ch == '>') jsb_put(c, &b, "&gt;", 4);
            else if (ch == '"') jsb_put(c, &b, "&#34;", 5);
            else if (ch == '\'') jsb_put(c, &b, "&#39;", 5);
            else jsb_putc(c, &b, ch);
        }
        return jsb_take(&b);
    }
    if (!strcmp(name, "wordcount")) {
        jv s = jv_to_str(c, v);
        int64_t n = 0;
        bool in = false;
        for (size_t i = 0; i < s.u.s.n; i++) {
            bool w = !is_space(s.u.s.p[i]);
            if (w && !in) n++;
            in = w;
        }
        return jv_int(n);
    }
    jx_fail(c, "no filter named '%s'", name);
}

/* ---- tests ---- */
static const char *const TESTS[] = {
    "defined", "undefined", "none", "string", "number", "integer", "float", "boolean",
    "mapping", "iterable", "sequence", "true", "false", "callable", "equalto", "eq", "==",
    "ne", "!=", "lt", "<", "le", "<=", "gt", ">", "ge", ">=", "in", "odd", "even",
    "divisibleby", "sameas", "lower", "upper", NULL};

bool jx_test_known(const char *name) {
    for (size_t i = 0; TESTS[i]; i++)
        if (!strcmp(TESTS[i], name)) return true;
    return false;
}

bool jx_test(jctx *c, const char *name, jv v, jargs *a) {
    jx_step(c);
    jv o = jx_arg(a, 0, NULL, jv_undef(NULL));
    if (!strcmp(name, "defined")) return v.t != JV_UNDEF;
    if (!strcmp(name, "undefined")) return v.t == JV_UNDEF;
    if (!strcmp(name, "none")) return v.t == JV_NONE;
    if (!strcmp(name, "string")) return v.t == JV_STR;
    if (!strcmp(name, "number")) return v.t == JV_INT || v.t == JV_FLOAT || v.t == JV_BOOL;
    if (!strcmp(name, "integer")) return v.t == JV_INT;
    if (!strcmp(name, "float")) return v.t == JV_FLOAT;
    if (!strcmp(name, "boolean")) return v.t == JV_BOOL;
    if (!strcmp(name, "mapping")) return v.t == JV_DICT && v.u.d->kind == JD_PLAIN;
    if (!strcmp(name, "iterable")) return v.t == JV_STR || v.t == JV_LIST || (v.t == JV_DICT && v.u.d->kind == JD_PLAIN) || v.t == JV_UNDEF;
    if (!strcmp(name, "sequence")) return v.t == JV_STR || v.t == JV_LIST || (v.t == JV_DICT && v.u.d->kind == JD_PLAIN);
    if (!strcmp(name, "true")) return v.t == JV_BOOL && v.u.b;
    if (!strcmp(name, "false")) return v.t == JV_BOOL && !v.u.b;
    if (!strcmp(name, "callable")) return v.t == JV_FUNC || v.t == JV_MACRO;
    if (!strcmp(name, "equalto") || !strcmp(name, "eq") || !strcmp(name, "==")) return jv_eq(v, o);
    if (!strcmp(name, "ne") || !strcmp(name, "!=")) return !jv_eq(v, o);
    if (!strcmp(name, "lt") || !strcmp(name, "<")) return jv_cmp(c, v, o) < 0;
    if (!strcmp(name, "le") || !strcmp(name, "<=")) return jv_cmp(c, v, o) <= 0;
    if (!strcmp(name, "gt") || !strcmp(name, ">")) return jv_cmp(c, v, o) > 0;
    if (!strcmp(name, "ge") || !strcmp(name, ">=")) return jv_cmp(c, v, o) >= 0;
    if (!strcmp(name, "in")) {
        if (o.t == JV_STR && v.t == JV_STR) return memmem(o.u.s.p, o.u.s.n, v.u.s.p, v.u.s.n) != NULL || !v.u.s.n;
        if (o.t == JV_LIST) { for (size_t i = 0; i < o.u.l->n; i++) if (jv_eq(o.u.l->v[i], v)) return true; return false; }
        if (o.t == JV_DICT) return jv_dict_getv(o.u.d, v) != NULL;
        jx_fail(c, "test 'in' needs a container");
    }
    if (!strcmp(name, "odd") || !strcmp(name, "even") || !strcmp(name, "divisibleby")) {
        if (v.t != JV_INT && v.t != JV_BOOL) jx_fail(c, "test '%s' expects an integer", name);
        int64_t x = v.t == JV_INT ? v.u.i : v.u.b;
        if (name[0] == 'o') return x % 2 != 0;
        if (name[0] == 'e') return x % 2 == 0;
        if (o.t != JV_INT || o.u.i == 0) jx_fail(c, "divisibleby needs a non-zero integer");
        return o.u.i == -1 || x % o.u.i == 0;
    }
    if (!strcmp(name, "sameas")) {
        if (v.t != o.t) return false;
        if (v.t == JV_NONE || v.t == JV_UNDEF) return true;
        if (v.t == JV_BOOL) return v.u.b == o.u.b;
        if (v.t == JV_LIST) return v.u.l == o.u.l;
        if (v.t == JV_DICT) return v.u.d == o.u.d;
        return jv_eq(v, o);
    }
    if (!strcmp(name, "lower") || !strcmp(name, "upper")) {
        if (v.t != JV_STR) return false;
        jv m = map_case(c, v, name[0] == 'l' ? 0 : 1);
        return jv_eq(m, v);
    }
    jx_fail(c, "no test named '%s'", name);
}
