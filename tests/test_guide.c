/* Guided decoding (zlight/guide.h): schemas compile or are refused by
 * keyword and path; the automaton takes exactly the bytes of matching
 * documents, all or none per feed; token masks of real vocabularies agree
 * bit for bit with zl_guide_accept; random walks through the masks end in
 * text that jansson parses and the schema accepts (seed printed; set
 * ZL_TEST_SEED to repeat).  Schemas and documents are written with ' for
 * " (dq() swaps them) to stay readable. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <zlight/guide.h>
#include <zlight/status.h>
#include <zlight/tokenizer.h>
#include "test_xz.h"

#define TOY ZL_TEST_SRCDIR "/fixtures/tokenizer/toy1.json"
#define N(a) (sizeof(a) / sizeof((a)[0]))
#define WS8 " \t \n \r  "
#define WS48 WS8 WS8 WS8 WS8 WS8 WS8

/* s with ' as " (a ring of buffers: a few may be live at once). */
static const char *dq(const char *s)
{
    static char ring[8][2048];
    static int at;
    char *o = ring[at++ % 8];
    size_t n = strlen(s);
    cr_assert_lt(n, sizeof ring[0]);
    for (size_t i = 0; i <= n; i++)
        o[i] = s[i] == '\'' ? '"' : s[i];
    return o;
}

/* text compiled, or NULL after a failed expectation that says why. */
static struct zl_json_schema *compile(const char *text)
{
    struct zl_json_schema *s;
    int rc = zl_json_schema_compile(text, strlen(text), &s);
    cr_expect_eq(rc, ZL_OK, "%s: %s", text, zl_last_error());
    return rc == ZL_OK ? s : NULL;
}

static struct zl_guide *guide(const struct zl_json_schema *s, const struct zl_guide_vocab *v)
{
    struct zl_guide *g;
    cr_assert_eq(zl_guide_create(s, v, &g), ZL_OK, "%s", zl_last_error());
    return g;
}

static uint64_t seed, rng;

static uint64_t rnd(void)       /* splitmix64 */
{
    uint64_t z = (rng += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void seed_rng(void)
{
    const char *env = getenv("ZL_TEST_SEED");
    seed = rng = env && *env ? strtoull(env, NULL, 0) : (uint64_t)time(NULL);
    fprintf(stderr, "guide: seed %llu (ZL_TEST_SEED=%llu repeats this run)\n",
            (unsigned long long)seed, (unsigned long long)seed);
}

/* ---- 1. Compiling schemas ---- */

#define TREE "{'$defs':{'node':{'type':'object','properties':{'v':{'type':'integer'}," \
             "'kids':{'type':'array','items':{'$ref':'#/$defs/node'}}},'required':['v']}}," \
             "'$ref':'#/$defs/node'}"
#define DEFS "{'definitions':{'p':{'properties':{'x':{'type':'number'}},'required':['x']}}," \
             "'type':'array','items':{'$ref':'#/definitions/p'}}"

Test(guide_schema, accepted)
{
    static const char *const ok[] = {
        "{}", "{'type':'object'}", "{'items':true,'maxItems':0}", "{'const':'x'}",
        "{'type':'object','properties':{'a':{'type':'string'},'b':{}},'required':['a'],"
        "'additionalProperties':false}",
        "{'properties':{'a':true},'additionalProperties':{'type':'integer'}}",
        "{'type':'array','items':{'type':'number'},'minItems':1,'maxItems':3}",
        "{'type':'string','minLength':2,'maxLength':5}", "{'enum':['a',1,null,true,[1],{'k':2}]}",
        "{'anyOf':[{'type':'string'},{'type':'null'}]}", "{'type':['integer','null']}",
        "{'oneOf':[{'type':'object'},{'type':'array'},{'type':'boolean'}]}",
        "{'allOf':[{'type':'integer'}]}", "{'type':'object','properties':{'next':{'$ref':'#'}}}",
        "{'title':'T','description':'d','$schema':'x','$comment':'c','type':'string',"
        "'format':'date-time','default':'a','examples':['b']}",
        "{'$defs':{'a':{'type':'integer'}},'$ref':'#/$defs/a'}",
        "{'definitions':{'a':{}},'properties':{'x':{'$ref':'#/definitions/a'}}}", TREE, DEFS,
    };
    for (size_t i = 0; i < N(ok); i++)
        zl_json_schema_free(compile(dq(ok[i])));
    zl_json_schema_free(NULL);
}

Test(guide_schema, refused_by_name)
{
    static const struct { const char *text; int rc; const char *what, *where; } bad[] = {
        {"{'type':'string','pattern':'^a'}", ZL_EUNSUPPORTED, "'pattern'", "at #"},
        {"{'properties':{'n':{'type':'integer','minimum':0}}}", ZL_EUNSUPPORTED, "'minimum'",
         "#/properties/n"},
        {"{'properties':{'a':{'properties':{'b':{'not':{}}}}}}", ZL_EUNSUPPORTED, "'not'",
         "#/properties/a/properties/b"},
        {"{'type':", ZL_EINVAL, "not JSON", NULL}, {"{'a':1,'a':2}", ZL_EINVAL, "not JSON", NULL},
        {"{'$ref':'#/$defs/missing'}", ZL_EINVAL, "'#/$defs/missing'", "at #"},
        {"{'properties':{'x':{'$ref':'#/definitions/no'}}}", ZL_EINVAL, "#/definitions/no",
         "#/properties/x"},
        {"{'$defs':{'a':{'$ref':'#/$defs/a'}},'$ref':'#/$defs/a'}", ZL_EUNSUPPORTED, "cycle", NULL},
        {"{'anyOf':[{'type':'integer'},{'type':'number'}]}", ZL_EUNSUPPORTED, "branches 0 and 1",
         "of #"},
        {"{'properties':{'v':{'anyOf':[{'type':'null'},{'type':'string'},{'enum':['s']}]}}}",
         ZL_EUNSUPPORTED, "branches 1 and 2", "#/properties/v"},
        {"{'type':['integer','number']}", ZL_EUNSUPPORTED, "branches 0 and 1", "of #"},
        {"{'anyOf':[{'type':'object'},{'properties':{'k':{'const':1}},'required':['k']}]}",
         ZL_EUNSUPPORTED, "picks the branch", "of #"},
        {"{'anyOf':[{'properties':{'k':{'enum':[1,2]}},'required':['k']},"
         "{'properties':{'k':{'const':2}},'required':['k']}]}", ZL_EUNSUPPORTED, "share", "of #"},
        {"{'properties':{'a':{}},'required':['b']}", ZL_EUNSUPPORTED, "'b'", "required at #"},
        {"{'properties':{'a':{'type':'strin'}}}", ZL_EINVAL, "'strin'", "#/properties/a"},
        {"{'type':['string','nul']}", ZL_EINVAL, "'nul'", "#"},
        {"{'maxLength':-1}", ZL_EINVAL, "maxLength", "at #"},
        {"{'minItems':3,'maxItems':2}", ZL_EINVAL, "maxItems", "at #"},
        {"{'items':[{}]}", ZL_EUNSUPPORTED, "items", "at #"},
        {"{'enum':[]}", ZL_EINVAL, "enum", "at #"},
    };
    for (size_t i = 0; i < N(bad); i++) {
        const char *t = dq(bad[i].text);
        struct zl_json_schema *s = (void *)&s;
        zl_clear_error();
        int rc = zl_json_schema_compile(t, strlen(t), &s);
        const char *msg = zl_last_error();
        cr_expect_eq(rc, bad[i].rc, "%s: %s, want %s (%s)", t, zl_status_str(rc),
                     zl_status_str(bad[i].rc), msg);
        cr_expect(rc != ZL_OK ? !s : (zl_json_schema_free(s), 1), "%s: *out set on failure", t);
        cr_expect(strstr(msg, bad[i].what) && (!bad[i].where || strstr(msg, bad[i].where)),
                  "%s: '%s' lacks %s / %s", t, msg, bad[i].what, bad[i].where);
    }
}

/* ---- 2. Bytes: the toy tokenizer is enough, only zl_guide_feed reads them ---- */

static struct zl_tokenizer *toy;
static struct zl_guide_vocab *toy_v;

static void toy_setup(void)
{
    cr_assert_eq(zl_tokenizer_load(TOY, &toy), ZL_OK, "%s: %s", TOY, zl_last_error());
    cr_assert_eq(zl_guide_vocab_create(toy, zl_tokenizer_n_vocab(toy), &toy_v), ZL_OK);
}

static void toy_teardown(void) { zl_guide_vocab_free(toy_v), zl_tokenizer_free(toy); }

struct row {
    const char *schema, *pre, *text;
    int ok, end;        /* text taken after pre; then can_end */
    const char *then;   /* refused rows: what the unchanged guide then takes to an end */
};
#define OK(s, p, t, e) {s, p, t, 1, e, NULL}
#define NO(s, p, t, then) {s, p, t, 0, 0, then}

#define ANY "{}"
#define T(name) "{'type':'" name "'}"
#define STR T("string")
#define NUM T("number")
#define INT T("integer")
#define REQ(extra) "{'type':'object','properties':{'a':{'type':'integer'},'b':{'type':'string'}}," \
                   "'required':['a']" extra "}"
#define LEN "{'type':'string','minLength':2,'maxLength':3}"
#define E110 "{'enum':[1,10]}"
#define E110A "{'type':'array','items':{'enum':[1,10]}}"
#define ERG "{'enum':['red','green',null]}"
#define AB "{'properties':{'a':{'type':'integer'},'ab':{}}}"
#define AI "{'properties':{'a':{'type':'integer'}},'additionalProperties':true}"
#define ITEMS12 "{'type':'array','minItems':1,'maxItems':2}"
#define UNION "{'anyOf':[{'type':'string','maxLength':1},{'type':'null'}]}"
#define TLIST "{'type':['integer','null']}"
/* objects told apart by a required const property (a forced choice of tools) */
#define TAGGED "{'anyOf':[{'properties':{'name':{'const':'a'},'p':{'type':'integer'}}," \
               "'required':['name','p'],'additionalProperties':false}," \
               "{'properties':{'name':{'enum':['b','bb']},'q':{'type':'string'}},'required':" \
               "['name'],'additionalProperties':false}]}"
#define NEST "{'properties':{'p':{'properties':{'q':{'items':{'properties':" \
             "{'r':{'type':'boolean'}}}}}}}}"
#define SELF "{'type':'object','properties':{'v':{'type':'integer'},'next':{'$ref':'#'}}," \
             "'required':['v']}"

static const struct row rows[] = {
    /* structure; whitespace in runs up to ZL_GUIDE_MAX_WS, none after the end */
    OK(ANY, "", "{'a':[1,{'b':null}],'c':{},'d':'x'}", 1),
    OK(ANY, "", "[[],[[]],{'x':[true,false,-1.5]},'s']", 1), OK(ANY, "", "{'':1}", 1),
    OK(ANY, "", " \t\n\r{ 'a' :\n1 , 'b':[ 2 ,3 ] }", 1), OK(ANY, "", "{" WS48 "}", 1),
    NO(ANY, "{", WS48 " ", WS48 "}"), OK(ANY, "", WS48 "1", 1), NO(ANY, "", WS48 " 1", "[]"),
    OK(ANY, "[1," WS48, "2" WS48 "]", 1), NO(ANY, "{}", " ", ""), NO(ANY, "{}", "{}", ""),
    NO(ANY, "1", "\n", ""), NO(ANY, "", "{'a' 1}", "{'a':1}"), NO(ANY, "[1", ",]", "]"),
    /* strings: escapes, UTF-8, control characters */
    OK(STR, "", "'a\\nb\\'c\\\\d\\u00e9\\u00E9\\/\\b\\f\\r\\t'", 1), OK(STR, "'ab", "", 0),
    NO(STR, "'", "\\ud800'", "\\u00e9'"), NO(STR, "'", "\\uDFFF'", "'"),
    /* a surrogate pair is one character; its low half must follow at once */
    OK(STR, "", "'\\ud83d\\ude00'", 1), NO(STR, "'\\uD83D", "x", "\\uDE00'"),
    NO(STR, "'\\ud83d\\u", "0", "dc00'"), NO(STR, "'\\ud83d\\ud", "8", "c00'"),
    NO(STR, "'", "\\x", "\\n'"), NO(STR, "'\\u12", "g", "ab'"),
    OK(STR, "", "'\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\x7f'", 1),
    NO(STR, "'", "\xc0\x80", "\xc3\xa9'"), NO(STR, "'", "\xe0\x80\x80", "\xe0\xa0\x80'"),
    NO(STR, "'", "\xed\xa0\x80", "\xed\x9f\xbf'"), NO(STR, "'", "\xf4\x90\x80\x80", "'"),
    NO(STR, "'", "\x80", "'"), NO(STR, "'\xe2\x82", "'", "\xac'"), NO(STR, "'", "\x01", "'"),
    NO(STR, "'a", "\tb'", "'"),
    /* numbers */
    OK(NUM, "", "-0", 1), OK(NUM, "", "1.5e-3", 1), OK(NUM, "", "0.25E+10", 1),
    OK(NUM, "", "-", 0), OK(NUM, "", "1.", 0), OK(NUM, "", "1e", 0), NO(NUM, "0", "1", ".5"),
    NO(NUM, "-0", "1", ""), NO(NUM, "", ".5", "0.5"), NO(NUM, "", "+1", "1"),
    NO(NUM, "1", ".e3", ".0e3"), NO("{'type':'array'}", "[1.", "]", "5]"),
    OK(INT, "", "-12", 1), NO(INT, "1", ".5", "2"), NO(INT, "1", "e3", "0"),
    NO(INT, "", "'1'", "1"), OK("{'items':{'type':'integer'}}", "", "[0,-1,23]", 1),
    /* literals */
    OK(ANY, "", "true", 1), OK(ANY, "", "fals", 0), NO(ANY, "nul", "L", "l"),
    OK(T("boolean"), "", "false", 1), NO(T("boolean"), "", "null", "true"),
    OK(T("null"), "", "null", 1), NO(T("null"), "", "true", "null"),
    /* enum / const: "1" of [1, 10] ends at the root and before a ',' */
    OK(E110, "", "1", 1), OK(E110, "", "10", 1), NO(E110, "1", "00", "0"),
    NO(E110, "", "2", "1"), NO(E110, "1", "1", ""), OK(E110A, "", "[1,10,1]", 1),
    OK(E110A, "", "[1 ,10 ]", 1), NO(E110A, "[1", "2", "0]"), OK(ERG, "", "'red'", 1),
    OK(ERG, "", "null", 1), NO(ERG, "", "'re'", "'green'"), NO(ERG, "'red", "s'", "'"),
    OK("{'const':{'k':[1,'x']}}", "", "{'k':[1,'x']}", 1),
    OK("{'properties':{'c':{'enum':['x','y']}}}", "", "{'c':'y'}", 1),
    /* objects: required, additionalProperties, repeated keys */
    NO(REQ(""), "", "{}", "{'a':1}"), NO(REQ(""), "{'b':'x'", "}", ",'a':1}"),
    OK(REQ(""), "", "{'b':'x','a':-1}", 1), NO(REQ(""), "{'a':1", ",'c':2", "}"),
    NO(REQ(",'additionalProperties':false"), "{'a':1,", "'c'", "'b':''}"),
    OK(REQ(",'additionalProperties':true"), "", "{'a':1,'c':[2],'d':{}}", 1),
    OK(REQ(",'additionalProperties':{'type':'string'}"), "", "{'c':'x','a':1}", 1),
    NO(REQ(",'additionalProperties':{'type':'string'}"), "{'a':1,'c':", "2", "'y'}"),
    NO(REQ(""), "{'a':1,", "'a':2", "'b':''}"), NO(REQ(""), "{'a':", "'1'", "1}"),
    NO(REQ(",'additionalProperties':true"), "{'a':1,", "'a':2", "'a2':0}"),
    OK(AB, "", "{'ab':'x','a':2}", 1), NO(AB, "{'ab", "c'", "':0}"),
    /* arrays: minItems / maxItems */
    NO(ITEMS12, "", "[]", "[1]"), OK(ITEMS12, "", "[1, [2,3]]", 1),
    NO(ITEMS12, "[1,2", ",3", "]"), OK("{'maxItems':0}", "", "[]", 1),
    NO("{'maxItems':0}", "[", "1", "]"), NO("{'minItems':2}", "[1", "]", ",{}]"),
    /* strings: minLength / maxLength count code points */
    NO(LEN, "", "'a'", "'ab'"), NO(LEN, "", "'\xc3\xa9'", "'\xc3\xa9\xc3\xa9'"),
    OK(LEN, "", "'\xc3\xa9\xc3\xa9\xc3\xa9'", 1),
    NO(LEN, "'\xc3\xa9\xc3\xa9\xc3\xa9", "\xc3\xa9", "'"),
    OK(LEN, "", "'\xf0\x9f\x98\x80\xf0\x9f\x98\x80'", 1), OK(LEN, "", "'\\u00e9\\n'", 1),
    NO(LEN, "'abc", "d", "'"),
    /* anyOf / type lists */
    OK(UNION, "", "'x'", 1), OK(UNION, "", "null", 1), NO(UNION, "", "1", "null"),
    NO(UNION, "'x", "y", "'"), OK(TLIST, "", "null", 1), OK(TLIST, "", "-5", 1),
    NO(TLIST, "1", ".5", ""), NO(TLIST, "", "'x'", "7"),
    /* tagged objects: the tag first, its value picks the branch */
    OK(TAGGED, "", "{'name':'a','p':1}", 1), OK(TAGGED, "", "{ 'name' : 'bb' }", 1),
    OK(TAGGED, "", "{'name':'b','q':'x'}", 1), NO(TAGGED, "{", "'p'", "'name':'a','p':2}"),
    NO(TAGGED, "{'name':'a'", "}", ",'p':3}"), NO(TAGGED, "{'name':'a',", "'q'", "'p':3}"),
    NO(TAGGED, "{'name':'b',", "'p'", "'q':'y'}"), NO(TAGGED, "{'name':", "'c'", "'a','p':0}"),
    NO(TAGGED, "{'name':'b','q':'x'", ",'name'", "}"),
    /* nesting and $ref */
    OK(NEST, "", "{'p':{'q':[{'r':true},{}]}}", 1), NO(NEST, "{'p':{'q':[{'r':", "1", "false}]}}"),
    OK(SELF, "", "{'v':1,'next':{'v':2,'next':{'v':3}}}", 1),
    NO(SELF, "{'v':1,'next':{", "}", "'v':0}}"),
    OK(TREE, "", "{'v':1,'kids':[{'v':2,'kids':[]},{'kids':[{'v':4}],'v':3}]}", 1),
    NO(TREE, "{'v':1,'kids':[{'kids':[]", "}", ",'v':0}]}"),
    OK(DEFS, "", "[{'x':1},{'x':-2.5}]", 1), NO(DEFS, "[", "{}", "{'x':0}]"),
    /* annotations change nothing */
    OK("{'type':'string','format':'date-time','title':'t','description':'d'}", "", "'no date'", 1),
};

TestSuite(guide_feed, .init = toy_setup, .fini = toy_teardown);

Test(guide_feed, table)
{
    size_t words = ((size_t)zl_guide_vocab_size(toy_v) + 31) / 32;
    uint32_t *m0 = calloc(words, 4), *m1 = calloc(words, 4);
    for (size_t i = 0; i < N(rows); i++) {
        const struct row *r = &rows[i];
        const char *sc = dq(r->schema), *pre = dq(r->pre), *text = dq(r->text);
        struct zl_json_schema *s = compile(sc);
        if (!s)
            continue;
        struct zl_guide *g = guide(s, toy_v), *b = guide(s, toy_v);
        int pre_ok = zl_guide_feed(g, pre, strlen(pre)) == ZL_OK;
        cr_expect(pre_ok, "%s: prefix %s: %s", sc, pre, zl_last_error());
        int end0 = zl_guide_can_end(g);
        int32_t c0 = zl_guide_mask(g, m0);
        int rc = pre_ok ? zl_guide_feed(g, text, strlen(text)) : ZL_EINVAL;
        cr_expect_eq(rc == ZL_OK, r->ok, "%s: %s|%s %s", sc, pre, text,
                     r->ok ? "refused" : "taken");
        /* one byte at a time: the same verdict */
        int byte_ok = zl_guide_feed(b, pre, strlen(pre)) == ZL_OK;
        for (size_t k = 0; byte_ok && text[k]; k++)
            byte_ok = zl_guide_feed(b, text + k, 1) == ZL_OK;
        cr_expect_eq(byte_ok, r->ok, "%s: %s|%s byte by byte", sc, pre, text);
        if (r->ok && rc == ZL_OK) {
            cr_expect_eq(zl_guide_can_end(g), r->end, "%s: %s%s: can_end", sc, pre, text);
            cr_expect_eq(zl_guide_can_end(b), r->end, "%s: %s%s: can_end, bytewise", sc, pre, text);
        } else if (!r->ok && rc != ZL_OK && pre_ok) {
            /* a refused feed changes nothing: same verdicts, then the continuation */
            cr_expect_eq(zl_guide_can_end(g), end0, "%s: %s|%s moved can_end", sc, pre, text);
            cr_expect_eq(zl_guide_mask(g, m1), c0, "%s: %s|%s moved the mask", sc, pre, text);
            cr_expect_arr_eq(m0, m1, words * 4, "%s: %s|%s moved the mask", sc, pre, text);
            const char *then = dq(r->then);
            cr_expect_eq(zl_guide_feed(g, then, strlen(then)), ZL_OK, "%s: %s|%s then %s: %s",
                         sc, pre, text, then, zl_last_error());
            cr_expect(zl_guide_can_end(g), "%s: %s then %s cannot end", sc, pre, then);
        }
        zl_guide_free(g);
        zl_guide_free(b);
        zl_json_schema_free(s);
    }
    free(m0);
    free(m1);
}

/* Edges guide.h states: 1, the guide takes the document to an end; 0, it
 * refuses it, compiling or fed; 2, the schema is refused by name. */
Test(guide_feed, stated_edges)
{
    static const struct { const char *schema, *doc; int valid; } gaps[] = {
        /* no escapes in keys where properties are listed: one could spell a
         * listed key and pass for an extra one */
        {AI, "{'\\u0061':'x'}", 0}, {AI, "{'a':1,'\\u0061':2}", 0},
        {"{'type':'object'}", "{'\\u0061':1}", 1},
        /* extra keys are not remembered, so they may repeat */
        {"{'type':'object'}", "{'k':1,'k':2}", 1},
        /* enum reals with the fewest digits that read back equal */
        {"{'enum':[0.1,2.5]}", "0.1", 1}, {"{'enum':[0.1,2.5]}", "0.10000000000000001", 0},
        /* type beside enum keeps the values of that type */
        {"{'type':'integer','enum':['x',3]}", "'x'", 0}, {"{'type':'integer','enum':['x',3]}", "3", 1},
        {"{'type':'integer','enum':['x']}", "'x'", 2},
        /* other keywords beside enum / anyOf / allOf / $ref are refused by name */
        {"{'enum':['a','bb'],'maxLength':1}", "'a'", 2},
        {"{'anyOf':[{'type':'string'},{'type':'null'}],'maxLength':1}", "'abc'", 2},
        {"{'allOf':[{'type':'object'}],'properties':{'a':{'type':'integer'}}}", "{'a':1}", 2},
        /* a property name JSON must escape could never be written */
        {"{'properties':{'a\\'b':{}},'required':['a\\'b']}", "{'a\\'b':1}", 2},
        /* the boolean schema true, at the root too */
        {"true", "1", 1},
    };
    for (size_t i = 0; i < N(gaps); i++) {
        const char *sc = dq(gaps[i].schema), *doc = dq(gaps[i].doc);
        struct zl_json_schema *s;
        int rc = zl_json_schema_compile(sc, strlen(sc), &s);
        if (gaps[i].valid == 2) {
            cr_expect(rc == ZL_EUNSUPPORTED || rc == ZL_EINVAL, "%s: compiled", sc);
            if (rc == ZL_OK)
                zl_json_schema_free(s);
            continue;
        }
        if (rc != ZL_OK) {
            cr_expect(!gaps[i].valid, "%s refused: %s", sc, zl_last_error());
            continue;
        }
        struct zl_guide *g = guide(s, toy_v);
        int took = zl_guide_feed(g, doc, strlen(doc)) == ZL_OK && zl_guide_can_end(g);
        cr_expect_eq(took, !!gaps[i].valid, "%s: %s %s", sc, doc, took ? "taken" : "refused");
        zl_guide_free(g);
        zl_json_schema_free(s);
    }
}

Test(guide_feed, depth_and_api)
{
    struct zl_json_schema *s = compile("{}");
    struct zl_guide *g = guide(s, toy_v);
    char open[ZL_GUIDE_MAX_DEPTH], close[ZL_GUIDE_MAX_DEPTH];
    memset(open, '[', sizeof open);
    memset(close, ']', sizeof close);
    cr_assert_eq(zl_guide_feed(g, open, sizeof open), ZL_OK, "%s", zl_last_error());
    cr_expect_neq(zl_guide_feed(g, "[", 1), ZL_OK, "nesting past ZL_GUIDE_MAX_DEPTH");
    cr_expect_neq(zl_guide_feed(g, "{", 1), ZL_OK, "nesting past ZL_GUIDE_MAX_DEPTH");
    cr_expect_eq(zl_guide_feed(g, "1", 1), ZL_OK, "a scalar at the deepest level");
    cr_expect_eq(zl_guide_feed(g, close, sizeof close), ZL_OK, "%s", zl_last_error());
    cr_expect(zl_guide_can_end(g));
    cr_expect_eq(zl_guide_accept(g, -1), ZL_EINVAL);
    cr_expect_eq(zl_guide_accept(g, zl_guide_vocab_size(toy_v)), ZL_EINVAL);
    zl_guide_free(g);
    zl_json_schema_free(s);
}

/* ---- 3. Masks of real vocabularies ---- */

struct vocab {
    struct zl_tokenizer *tok;
    struct zl_guide_vocab *v;
    int32_t n;              /* the guide's width: a model's logits may pass the tokenizer */
    size_t words;
};

static void load_vocab(const char *name, int32_t extra, struct vocab *o)
{
    o->tok = shared_tokenizer(name);
    o->n = zl_tokenizer_n_vocab(o->tok) + extra;
    cr_assert_eq(zl_guide_vocab_create(o->tok, o->n, &o->v), ZL_OK, "%s", zl_last_error());
    cr_assert_eq(zl_guide_vocab_size(o->v), o->n);
    o->words = ((size_t)o->n + 31) / 32;
    seed_rng();
}

static void free_vocab(struct vocab *o) { zl_guide_vocab_free(o->v), zl_tokenizer_free(o->tok); }
static int bit(const uint32_t *m, int64_t t) { return m[t / 32] >> (t % 32) & 1; }

/* Text of ids (zl_tokenizer_decode, flags 0), malloc'd. */
static char *text_of(const struct vocab *o, const int32_t *ids, size_t n, size_t *len)
{
    char *s;
    size_t l;
    cr_assert_eq(zl_tokenizer_decode(o->tok, ids, n, 0, &s, len ? len : &l), ZL_OK);
    return s;
}

#define PERSON "{'type':'object','properties':{'name':{'type':'string','maxLength':12}," \
    "'age':{'type':'integer'},'ok':{'type':'boolean'},'tags':{'type':'array','items':" \
    "{'enum':['red','green','blue']},'maxItems':4},'inner':{'type':'object','properties':" \
    "{'x':{'type':'number'},'y':{'anyOf':[{'type':'string','maxLength':5},{'type':'null'}]}}," \
    "'required':['x'],'additionalProperties':false}},'required':['name','age']," \
    "'additionalProperties':false}"
#define NUMS "{'anyOf':[{'type':'integer'},{'type':'array','items':{'enum':[1,10,'s',null]}," \
    "'maxItems':5}]}"

static const struct { const char *schema, *pre; } states[] = {
    {PERSON, ""}, {PERSON, " "}, {PERSON, "{"}, {PERSON, "{'"}, {PERSON, "{'na"},
    {PERSON, "{'name'"}, {PERSON, "{'name':"}, {PERSON, "{'name': '"},
    {PERSON, "{'name':'abcdefghijk"}, {PERSON, "{'name':'abcdefghijkl"},
    {PERSON, "{'name':'a\\"}, {PERSON, "{'name':'\xe2\x82"}, {PERSON, "{'name':'x','age':12"},
    {PERSON, "{'name':'x','age':-"}, {PERSON, "{'age':1,'name':'x'"},
    {PERSON, "{'age':1,'name':'x','tags':["}, {PERSON, "{'age':1,'name':'x','tags':['red','gr"},
    {PERSON, "{'age':1,'name':'x','inner':{'x':1.5e"}, {PERSON, "{'age':1,'inner':{'x':1,'y':"},
    {PERSON, "{'age':1,'name':'x','ok':tr"}, {PERSON, "{'age':1,'name':'x','ok':true}"},
    {ANY, "[1, {'k': '\\u00"}, {ANY, "[12"}, {ANY, "{'a':[tr"}, {ANY, "{'ab"}, {ANY, "['x"},
    {NUMS, "[1"}, {NUMS, "12"},
};

/* (a) Bit t of the mask == a fresh guide fed the same prefix takes t, for
 * every id whose text holds a quote or JSON punctuation and ~2000 others. */
static void exact(const char *name, int32_t extra)
{
    struct vocab o;
    load_vocab(name, extra, &o);
    int32_t *ids = malloc(sizeof(*ids) * (size_t)o.n), n_ids = 0;
    for (int32_t t = 0; t < o.n; t++) {
        size_t len;
        char *s = text_of(&o, &t, 1, &len);
        int punct = len && strcspn(s, "\"{},:") < len;
        free(s);
        if (punct || rnd() % (uint64_t)o.n < 2000 || t >= o.n - extra)
            ids[n_ids++] = t;
    }
    uint32_t *m = malloc(o.words * sizeof(*m));
    for (size_t i = 0; i < N(states); i++) {
        const char *pre = dq(states[i].pre);
        struct zl_json_schema *s = compile(dq(states[i].schema));
        cr_assert_not_null(s);
        struct zl_guide *g = guide(s, o.v);
        cr_assert_eq(zl_guide_feed(g, pre, strlen(pre)), ZL_OK, "%s: %s", pre, zl_last_error());
        int32_t count = zl_guide_mask(g, m), set = 0;
        for (size_t w = 0; w < o.words; w++)
            set += __builtin_popcount(m[w]);
        cr_expect_eq(count, set, "%s: %s: count %d, %d bits set", name, pre, count, set);
        cr_expect(count > 0 || zl_guide_can_end(g), "%s: %s: a dead end", name, pre);
        for (int32_t t = 0; t < (int32_t)o.words * 32; t++)   /* ids past n_vocab too */
            if (t >= o.n || zl_tokenizer_is_special(o.tok, t))
                cr_expect(!bit(m, t), "%s: %s: special or absent id %d allowed", name, pre, t);
        int bad = 0;
        for (int32_t k = 0; k < n_ids; k++) {
            struct zl_guide *h = guide(s, o.v);
            cr_assert_eq(zl_guide_feed(h, pre, strlen(pre)), ZL_OK);
            int took = zl_guide_accept(h, ids[k]) == ZL_OK;
            if (took != bit(m, ids[k]) && bad++ < 5) {
                char *t = text_of(&o, &ids[k], 1, NULL);
                cr_log_error("%s: after %s token %d (%s): mask %d, accept %d", name, pre,
                             ids[k], t, bit(m, ids[k]), took);
                free(t);
            }
            zl_guide_free(h);
        }
        cr_expect_eq(bad, 0, "%s: after %s, %d of %d tokens disagree", name, pre, bad, n_ids);
        zl_guide_free(g);
        zl_json_schema_free(s);
    }
    free(m);
    free(ids);
    free_vocab(&o);
}

Test(guide_mask, exact_llama3, .timeout = 120) { exact("llama3", 0); }
/* logits wider than the tokenizer (and not a multiple of 32): no id past it */
Test(guide_mask, exact_llama2, .timeout = 120) { exact("llama2", 37); }

/* The k-th set bit of m. */
static int32_t pick(const uint32_t *m, int32_t k)
{
    for (int32_t w = 0;; k -= __builtin_popcount(m[w++]))
        if (k < __builtin_popcount(m[w]))
            for (int32_t t = w * 32;; t++)
                if (bit(m, t) && k-- == 0)
                    return t;
}

/* (b) A random document: tokens drawn uniformly among the allowed ones
 * until the guide can end and nothing more may come or a coin says stop.
 * Returns its length, -1 when cap tokens did not end it. */
static int walk(const struct vocab *o, const struct zl_json_schema *s, int cap, int32_t *ids,
                uint32_t *m)
{
    struct zl_guide *g = guide(s, o->v);
    int n = 0;
    for (;;) {
        int32_t c = zl_guide_mask(g, m);
        cr_assert_geq(c, 0, "%s", zl_last_error());
        int end = zl_guide_can_end(g);
        if (!c && !end)
            cr_assert_fail("dead end after %d tokens (seed %llu): %s", n,
                           (unsigned long long)seed, text_of(o, ids, (size_t)n, NULL));
        if (end && (!c || rnd() & 1))
            break;
        if (n == cap) {
            n = -1;
            break;
        }
        int32_t t = pick(m, (int32_t)(rnd() % (uint64_t)c));
        cr_assert(!zl_tokenizer_is_special(o->tok, t));
        cr_assert_eq(zl_guide_accept(g, t), ZL_OK, "token %d in the mask refused (seed %llu): %s",
                     t, (unsigned long long)seed, zl_last_error());
        ids[n++] = t;
    }
    zl_guide_free(g);
    return n;
}

static int is_type(json_t *v, const char *t)
{
    if (!strcmp(t, "integer")) {    /* reals: JSON_DECODE_INT_AS_REAL; big doubles are whole */
        double d = json_number_value(v);
        return json_is_integer(v) ||
               (json_is_real(v) && (d > 9e18 || d < -9e18 || d == (double)(int64_t)d));
    }
    return !strcmp(t, "object") ? json_is_object(v) : !strcmp(t, "array") ? json_is_array(v)
         : !strcmp(t, "string") ? json_is_string(v) : !strcmp(t, "number") ? json_is_number(v)
         : !strcmp(t, "boolean") ? json_is_boolean(v) : !strcmp(t, "null") && json_is_null(v);
}

/* The keywords of the walk schemas on a parsed value (additionalProperties
 * false when properties are listed, as guide.h says); *why: the one missed. */
static int satisfies(json_t *sc, json_t *v, const char **why)
{
    json_t *k, *x;
    size_t i;
    if ((k = json_object_get(sc, "anyOf"))) {
        json_array_foreach(k, i, x)
            if (satisfies(x, v, why))
                return 1;
        return *why = "anyOf", 0;
    }
    if ((k = json_object_get(sc, "enum"))) {
        json_array_foreach(k, i, x)
            if (json_is_number(x) && json_is_number(v)
                    ? json_number_value(x) == json_number_value(v) : json_equal(x, v))
                return 1;
        return *why = "enum", 0;
    }
    if ((k = json_object_get(sc, "type")) && !is_type(v, json_string_value(k)))
        return *why = "type", 0;
    int str = json_is_string(v);
    json_int_t lo = json_integer_value(json_object_get(sc, str ? "minLength" : "minItems"));
    json_t *hi = json_object_get(sc, str ? "maxLength" : "maxItems");
    if (str) {
        const unsigned char *p = (const unsigned char *)json_string_value(v);
        json_int_t cps = 0;
        for (i = 0; i < json_string_length(v); i++)
            cps += (p[i] & 0xC0) != 0x80;       /* code points, not bytes */
        if (cps < lo || (hi && cps > json_integer_value(hi)))
            return *why = "minLength / maxLength", 0;
    }
    if (json_is_array(v)) {
        json_int_t n = (json_int_t)json_array_size(v);
        if (n < lo || (hi && n > json_integer_value(hi)))
            return *why = "minItems / maxItems", 0;
        json_array_foreach(v, i, x)
            if ((k = json_object_get(sc, "items")) && !satisfies(k, x, why))
                return 0;
    }
    if (json_is_object(v)) {
        json_t *props = json_object_get(sc, "properties");
        json_t *add = json_object_get(sc, "additionalProperties");
        json_array_foreach(json_object_get(sc, "required"), i, x)
            if (!json_object_get(v, json_string_value(x)))
                return *why = "required", 0;
        const char *key;
        json_object_foreach(v, key, x) {
            json_t *p = json_object_get(props, key);
            if (!p)
                p = add ? add : props ? json_false() : json_true();
            if (json_is_false(p))
                return *why = "additionalProperties", 0;
            if (!json_is_true(p) && !satisfies(p, x, why))
                return 0;
        }
    }
    return 1;
}

#define WALKS 50
#define CAP 400

/* Uniform draws rarely close a free string (about one token in a thousand
 * holds a closing quote that fits), so walks of {"type":"object"} mostly
 * hit the cap (measured: 4 to 20 of 50 end), so one must; of the bounded
 * schemas 80%, of TAGGED (a free string in one branch: 35 to 37 of 50
 * measured) half.  Duplicate keys are refused by the parse except in the
 * free object, whose extra keys may repeat (guide.h). */
static void walks(const char *name)
{
    struct vocab o;
    load_vocab(name, 0, &o);
    static const struct { const char *schema; int pct; } ws[] = {
        {"{'type':'object'}", 2}, {PERSON, 80}, {NUMS, 80}, {TAGGED, 50},
    };
    int32_t *ids = malloc(sizeof(*ids) * (CAP + 1));
    uint32_t *m = malloc(o.words * sizeof(*m));
    for (size_t k = 0; k < N(ws); k++) {
        const char *sc = dq(ws[k].schema);
        json_t *sj = json_loads(sc, 0, NULL);
        struct zl_json_schema *s = compile(sc);
        cr_assert(sj && s);
        int ended = 0, huge = 0;
        for (int w = 0; w < WALKS; w++) {
            int n = walk(&o, s, CAP, ids, m);
            if (n < 0)
                continue;
            ended++;
            size_t len;
            char *text = text_of(&o, ids, (size_t)n, &len);
            json_error_t err;
            json_t *v = json_loadb(text, len, JSON_DECODE_ANY | (k ? JSON_REJECT_DUPLICATES : 0) |
                                   JSON_ALLOW_NUL | JSON_DECODE_INT_AS_REAL, &err);
            const char *why = "";
            if (!v && strstr(err.text, "real number overflow")) {
                huge++;     /* JSON all the same (1e400): past jansson's doubles, unchecked */
                free(text);
                continue;
            }
            cr_expect(v, "%s %s (seed %llu): not JSON (%s at %d): %s", name, sc,
                      (unsigned long long)seed, err.text, err.position, text);
            cr_expect(!v || satisfies(sj, v, &why), "%s %s (seed %llu): %s fails %s", name, sc,
                      (unsigned long long)seed, text, why);
            json_decref(v);
            free(text);
        }
        fprintf(stderr, "guide: %s %.40s...: %d of %d walks ended within %d tokens (%d with "
                "numbers past jansson's doubles)\n", name, sc, ended, WALKS, CAP, huge);
        cr_expect_geq(ended * 100, WALKS * ws[k].pct, "%s %s: %d of %d walks ended (seed %llu)",
                      name, sc, ended, WALKS, (unsigned long long)seed);
        zl_json_schema_free(s);
        json_decref(sj);
    }
    free(m);
    free(ids);
    free_vocab(&o);
}

Test(guide_mask, walks_llama3, .timeout = 120) { walks("llama3"); }
Test(guide_mask, walks_llama2, .timeout = 120) { walks("llama2"); }

/* (c) A mask asked twice in one state is the same, and one from the cache
 * is the one a fresh guide computes: the script revisits states whose
 * frames differ under equal headers ("[" and "}" inside the array), then
 * random tokens go on. */
Test(guide_mask, cache_llama3, .timeout = 120)
{
    static const char *const script[] = {"[", "{", "'k'", ":", "'ab'", ",", "'n'", ":", "12", "}",
                                         ",", "{", "'n'", ":", "3", ",", "'k'", ":", "'x'", "}",
                                         ",", "{", "}", ","};
    struct vocab o;
    load_vocab("llama3", 0, &o);
    struct zl_json_schema *s = compile(dq("{'items':{'properties':{'k':{'type':'string',"
                                          "'maxLength':3},'n':{'type':'integer'}}}}"));
    cr_assert_not_null(s);
    struct zl_guide *g = guide(s, o.v);
    uint32_t *m1 = malloc(o.words * 4), *m2 = malloc(o.words * 4), *m3 = malloc(o.words * 4);
    char fed[256] = "";
    int32_t ids[60], n_ids = 0;
    for (size_t n = 0; n < N(script) + 60; n++) {
        int32_t c1 = zl_guide_mask(g, m1), c2 = zl_guide_mask(g, m2);
        struct zl_guide *h = guide(s, o.v);
        cr_assert_eq(zl_guide_feed(h, fed, strlen(fed)), ZL_OK);
        for (int k = 0; k < n_ids; k++)
            cr_assert_eq(zl_guide_accept(h, ids[k]), ZL_OK);
        int32_t c3 = zl_guide_mask(h, m3);
        zl_guide_free(h);
        cr_assert(c1 == c2 && !memcmp(m1, m2, o.words * 4), "after %s + %d tokens: asked twice, "
                  "%d then %d set or other bits (seed %llu)", fed, n_ids, c1, c2,
                  (unsigned long long)seed);
        cr_assert(c1 == c3 && !memcmp(m1, m3, o.words * 4), "after %s + %d tokens: %d set, a "
                  "fresh guide %d or other bits (seed %llu)", fed, n_ids, c1, c3,
                  (unsigned long long)seed);
        if (n < N(script)) {
            const char *b = dq(script[n]);
            cr_assert_eq(zl_guide_feed(g, b, strlen(b)), ZL_OK, "%s%s", fed, b);
            strcat(fed, b);
        } else if (c1) {
            ids[n_ids] = pick(m1, (int32_t)(rnd() % (uint64_t)c1));
            cr_assert_eq(zl_guide_accept(g, ids[n_ids++]), ZL_OK);
        }
    }
    zl_guide_free(g);
    zl_json_schema_free(s);
    free(m1), free(m2), free(m3);
    free_vocab(&o);
}
