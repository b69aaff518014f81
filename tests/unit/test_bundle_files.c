/* File-level pass rules (common/bundle_files.h): junk names, PNG, .lproj names, pass.strings in every
 * encoding Wallet reads, whole pass models and a pass's own images, each with its exact message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/bundle_files.h"
#include "problems_text.h"

/* A 1x1 PNG (the integration tests' PNG_1X1). */
static const unsigned char PNG[] = {
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52, 0x00,
    0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4, 0x89, 0x00,
    0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60, 0x00, 0x00, 0x00, 0x02, 0x00, 0x01,
    0x54, 0xa2, 0x4f, 0x5d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82};

#define MSG_BOTH                                                                                             \
    "is also at the top level: an image goes either at the top level or in .lproj folders, not both"
#define MSG_BAD_LPROJ                                                                                        \
    "is not a localization folder name: use a language code of 2 or 3 letters, optionally with a script "    \
    "or region (en.lproj, pt-BR.lproj, zh-Hans.lproj)"

static cm_file_t text_file(const char *name, const char *text)
{
    return (cm_file_t){.name = name, .data = (const unsigned char *)text, .len = strlen(text)};
}

static cm_file_t png_file(const char *name)
{
    return (cm_file_t){.name = name, .data = PNG, .len = sizeof(PNG)};
}

static void expect_files(const cm_file_t *files, size_t n, const char *want)
{
    cm_problems_t *p = cm_problems_new();
    cm_bundle_files_check(files, n, p);
    char *got = problems_text(p, "file");
    assert_string_equal(got, want);
    free(got);
    cm_problems_free(p);
}

static void junk(void **state)
{
    const char *yes[] = {
        ".DS_Store",  "en.lproj/.DS_Store",     "Thumbs.db",           "thumbs.db",
        "._icon.png", "Event.pass/._pass.json", "__MACOSX/._icon.png", "Event.pass/__MACOSX/x",
        "__MACOSX"};
    const char *no[] = {"icon.png",     "DS_Store", "a.DS_Store", "en.lproj/pass.strings",
                        "__MACOSX.png", "x_.png"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        assert_true(cm_bundle_files_is_junk(yes[i]));
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        assert_false(cm_bundle_files_is_junk(no[i]));
}

static void png(void **state)
{
    unsigned char b[sizeof(PNG)];
    assert_null(cm_bundle_files_png_problem(PNG, sizeof(PNG)));
    assert_string_equal(cm_bundle_files_png_problem((const unsigned char *)"GIF89a", 6), "not a PNG image");
    assert_string_equal(cm_bundle_files_png_problem(PNG, 7), "not a PNG image");
    assert_string_equal(cm_bundle_files_png_problem(PNG, 20),
                        "not a PNG image: no IHDR chunk after the PNG signature");
    memcpy(b, PNG, sizeof(b));
    b[12] = 'X'; /* chunk type IXDR */
    assert_string_equal(cm_bundle_files_png_problem(b, sizeof(b)),
                        "not a PNG image: no IHDR chunk after the PNG signature");
    memcpy(b, PNG, sizeof(b));
    b[19] = 0; /* width 0 */
    assert_string_equal(cm_bundle_files_png_problem(b, sizeof(b)),
                        "not a PNG image: its IHDR chunk gives a width or height of 0");
}

static void lproj_names(void **state)
{
    const char *yes[] = {"en.lproj",         "fr.lproj",     "pt-BR.lproj", "zh-Hans.lproj", "zh_CN.lproj",
                         "zh-Hant-TW.lproj", "es-419.lproj", "yue.lproj",   "en_GB.lproj"};
    const char *no[] = {"english.lproj",  "e.lproj",           "en.lprojx",    "en",
                        "en-.lproj",      "en-B.lproj",        "en-GBR.lproj", "en-BR-Hans.lproj",
                        "en-GB-FR.lproj", "1a.lproj",          ".lproj",       "en--GB.lproj",
                        "en GB.lproj",    "zh-Hans-Hant.lproj"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        assert_true(cm_bundle_files_lproj_is_valid(yes[i], strlen(yes[i])));
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        assert_false(cm_bundle_files_lproj_is_valid(no[i], strlen(no[i])));
}

static int strings_check(const void *data, size_t len, char *msg)
{
    return cm_bundle_files_strings_check(data, len, msg, 256);
}

/* text (ASCII) as UTF-16 of the given byte order, with its BOM. */
static size_t utf16(const char *text, int big_endian, unsigned char *out)
{
    size_t n = 0;
    out[n++] = big_endian ? 0xfe : 0xff;
    out[n++] = big_endian ? 0xff : 0xfe;
    for (const char *c = text; *c; c++) {
        out[n++] = big_endian ? 0 : (unsigned char)*c;
        out[n++] = big_endian ? (unsigned char)*c : 0;
    }
    return n;
}

static void strings_encodings(void **state)
{
    char msg[256];
    unsigned char buf[512];
    const char *text =
        "/* comment\n over lines */\n\"EVENT\" = \"Ev\\\"ent\";\n// line comment\n\"a\"=\"b\";";
    assert_int_equal(strings_check(text, strlen(text), msg), 0);
    size_t n = utf16(text, 0, buf);
    assert_int_equal(strings_check(buf, n, msg), 0);
    n = utf16(text, 1, buf);
    assert_int_equal(strings_check(buf, n, msg), 0);
    /* UTF-8 with its BOM, non-ASCII text */
    const char *bom = "\xef\xbb\xbf\"GATE\" = \"Porte \xc3\xa0 gauche\";\n";
    assert_int_equal(strings_check(bom, strlen(bom), msg), 0);
    assert_int_equal(strings_check("", 0, msg), 0);
    /* old-style property list forms Wallet reads too: unquoted words, the short form "key"; */
    const char *plist = "GATE = Tor;\n\"short\";\nurl = https://example.com/a_b-c.d$e;";
    assert_int_equal(strings_check(plist, strlen(plist), msg), 0);

    /* UTF-16 without a BOM reads as UTF-8 with NULs */
    n = utf16("\"a\" = \"b\";", 0, buf);
    assert_int_equal(strings_check(buf + 2, n - 2, msg), -1);
    assert_string_equal(msg, "a NUL byte at line 1: UTF-16 text needs a byte order mark (FF FE or FE FF)");
    /* an odd byte after a UTF-16 BOM */
    n = utf16("\"a\" = \"b\";", 0, buf);
    assert_int_equal(strings_check(buf, n - 1, msg), -1);
    assert_string_equal(msg, "UTF-16 text with an odd number of bytes (21)");
    /* a lone surrogate */
    const unsigned char lone[] = {0xfe, 0xff, 0xd8, 0x00, 0x00, 0x41};
    assert_int_equal(strings_check(lone, sizeof(lone), msg), -1);
    assert_string_equal(msg, "invalid UTF-16 (lone surrogate U+D800) at line 1");
    assert_int_equal(strings_check("\"a\" = \"\xe9t\xe9\";", 11, msg), -1);
    assert_string_equal(
        msg, "neither UTF-8 nor UTF-16 with a byte order mark (FF FE or FE FF): byte 0xe9 at line 1");
    assert_int_equal(strings_check("\xef\xbb\xbf\"a\" = \"\xff\";", 12, msg), -1);
    assert_string_equal(
        msg, "neither UTF-8 nor UTF-16 with a byte order mark (FF FE or FE FF): byte 0xff at line 1");
}

static void strings_grammar(void **state)
{
    char msg[256];
    struct {
        const char *text, *want;
    } cases[] = {
        {"'EVENT' = \"x\";", "expected a key (a quoted string) at line 1, found '''"},
        {"\"a\" = \"b\";\n\"c\" \"d\";", "expected '=' or ';' after the key \"c\" at line 2"},
        {"\"a\" =\n\n ;", "expected a value (a quoted string) at line 3, found ';'"},
        {"\"a\" = \"b\"\n\"c\" = \"d\";", "expected ';' after the entry \"a\" at line 2"},
        {"\"a\" = \"b\";\n/* open", "unterminated comment at line 2"},
        {"\"a\" = \"b\";\n\"c\" = \"d\n\n", "unterminated string starting at line 2"},
        {"\n\"ab", "unterminated string starting at line 2"},
        {"\"a\" = \"b\"", "expected ';' after the entry \"a\" at line 1"},
        {"\"a\"", "expected '=' or ';' after the key \"a\" at line 1"},
        {"\"a\" = \"b\";\n\"a\" = \"c\";", "the key \"a\" appears twice (again at line 2)"},
        {"\"a\" = \"\\x41\";", "unknown escape \\x at line 1"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(strings_check(cases[i].text, strlen(cases[i].text), msg), -1);
        assert_string_equal(msg, cases[i].want);
    }
}

static void valid_models(void **state)
{
    cm_file_t files[] = {text_file("pass.json", "{}"),
                         png_file("icon.png"),
                         png_file("icon@2x.png"),
                         png_file("fr.lproj/logo.png"),
                         png_file("zh-Hans.lproj/logo.png"),
                         text_file("fr.lproj/pass.strings", "\"a\" = \"b\";"),
                         text_file("personalization.json", "{}")};
    expect_files(files, sizeof(files) / sizeof(files[0]), "");
}

static void broken_model(void **state)
{
    cm_file_t files[] = {
        text_file("logo.png", "not a png"),
        png_file("strip.png"),
        text_file("manifest.json", "{}"),
        text_file("Signature", "x"),
        text_file("notes.txt", "x"),
        text_file("pass.strings", "\"a\" = \"b\";"),
        png_file("images/a.png"),
        png_file("images/b.png"),
        png_file("english.lproj/logo.png"),
        text_file("english.lproj/pass.strings", "\"a\" = \"b\";"),
        text_file("en.lproj/pass.strings", "\"a\" \"b\";"),
        png_file("en.lproj/logo.png"),
        text_file("en.lproj/readme.txt", "x"),
        text_file("de.lproj/thumbnail.png", "GIF89a"),
    };
    expect_files(
        files, sizeof(files) / sizeof(files[0]),
        "logo.png: not a PNG image\n"
        "manifest.json: is made by the signer when it signs the pass: leave it out of the pass model\n"
        "Signature: is made by the signer when it signs the pass: leave it out of the pass model\n"
        "notes.txt: does not belong in a pass (a pass model holds pass.json, PNG images and .lproj "
        "folders)\n"
        "pass.strings: does not belong in a pass (a pass model holds pass.json, PNG images and .lproj "
        "folders)\n"
        "images: is not a localization folder: a pass holds only .lproj folders (like en.lproj)\n"
        "english.lproj: " MSG_BAD_LPROJ "\n"
        "english.lproj/logo.png: logo.png " MSG_BOTH "\n"
        "en.lproj/pass.strings: expected '=' or ';' after the key \"a\" at line 1\n"
        "en.lproj/logo.png: logo.png " MSG_BOTH "\n"
        "en.lproj/readme.txt: does not belong in a .lproj folder (it holds pass.strings and PNG images)\n"
        "de.lproj/thumbnail.png: not a PNG image\n"
        "pass.json: is required\n"
        "icon.png: is required at the top level: Wallet refuses a pass without an icon\n");
}

static void own_files(void **state)
{
    const char *others[] = {"pass.json", "icon.png", "logo.png", "fr.lproj/strip.png",
                            "fr.lproj/pass.strings"};
    size_t n = sizeof(others) / sizeof(others[0]);
    struct {
        const char *name;
        const unsigned char *data;
        size_t len;
        const char *want;
    } cases[] = {
        {"strip@2x.png", PNG, sizeof(PNG), ""},
        {"logo.png", PNG, sizeof(PNG), ""}, /* replaces the template's */
        {"de.lproj/strip.png", PNG, sizeof(PNG), ""},
        {"fr.lproj/strip.png", PNG, sizeof(PNG), ""},
        {"thumbnail.png", (const unsigned char *)"GIF89a", 6, "thumbnail.png: not a PNG image\n"},
        {"de.lproj/logo.png", PNG, sizeof(PNG), "de.lproj/logo.png: logo.png " MSG_BOTH "\n"},
        {"strip.png", PNG, sizeof(PNG),
         "strip.png: is also in fr.lproj/strip.png: an image goes either at the top level or in .lproj "
         "folders, "
         "not both\n"},
        {"notes.txt", PNG, sizeof(PNG),
         "notes.txt: is not a PNG image name: a pass's own files are images (*.png) at the top level or in a "
         ".lproj folder\n"},
        {"fr.lproj/pass.strings", PNG, sizeof(PNG),
         "fr.lproj/pass.strings: is not a PNG image name: a pass's own files are images (*.png) at the top "
         "level "
         "or in a .lproj folder\n"},
        {"english.lproj/x.png", PNG, sizeof(PNG), "english.lproj: " MSG_BAD_LPROJ "\n"},
        {"img/x.png", PNG, sizeof(PNG),
         "img: is not a localization folder: a pass holds only .lproj folders (like en.lproj)\n"},
        {"a/b/c.png", PNG, sizeof(PNG),
         "a/b/c.png: is not an allowed file name (printable ASCII without spaces, no \".\" or \"..\" part, "
         "at "
         "most one folder)\n"},
        {"../x.png", PNG, sizeof(PNG),
         "../x.png: is not an allowed file name (printable ASCII without spaces, no \".\" or \"..\" part, at "
         "most one folder)\n"},
        {"Logo.png", PNG, sizeof(PNG),
         "Logo.png: differs from logo.png only in case: use that name to replace it\n"},
        {"._strip.png", PNG, sizeof(PNG),
         "._strip.png: is a leftover of macOS or Windows (.DS_Store, ._*, Thumbs.db), not a file of the "
         "pass\n"},
        {"my logo.png", PNG, sizeof(PNG),
         "my logo.png: is not an allowed file name (printable ASCII without spaces, no \".\" or \"..\" part, "
         "at "
         "most one folder)\n"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        cm_problems_t *p = cm_problems_new();
        cm_bundle_files_check_own(cases[i].name, cases[i].data, cases[i].len, others, n, p);
        char *got = problems_text(p, "file");
        assert_string_equal(got, cases[i].want);
        free(got);
        cm_problems_free(p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(junk),
        cmocka_unit_test(png),
        cmocka_unit_test(lproj_names),
        cmocka_unit_test(strings_encodings),
        cmocka_unit_test(strings_grammar),
        cmocka_unit_test(valid_models),
        cmocka_unit_test(broken_model),
        cmocka_unit_test(own_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
