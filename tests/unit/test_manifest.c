/*
 * manifest.json (common/manifest.h) against known SHA-1 vectors, and the in-memory .pkpass archive
 * (common/bundle_zip.h) that carries it, read back with libzip.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>
#include <zip.h>

#include "common/bundle_zip.h"
#include "common/manifest.h"

#define SHA1_EMPTY "da39a3ee5e6b4b0d3255bfef95601890afd80709"
#define SHA1_ABC   "a9993e364706816aba3e25717850c26c9cd0d89d"
#define SHA1_FOX   "2fd4e1c67a2d28fced849ee1bb76e7391b93eb12"
#define FOX        "The quick brown fox jumps over the lazy dog"

#define FILE_OF(n, s)                                                                                        \
    {                                                                                                        \
        .name = (n), .data = (const unsigned char *)(s), .len = sizeof(s) - 1                                \
    }

static void hashes_known_vectors_sorted(void **state)
{
    const cm_file_t files[] = {
        FILE_OF("pass.json", FOX),
        FILE_OF("icon.png", "abc"),
        FILE_OF("en.lproj/pass.strings", ""),
    };
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(cm_manifest_build(files, 3, &out, &len), 0);
    assert_string_equal(out, "{\"en.lproj/pass.strings\":\"" SHA1_EMPTY "\",\"icon.png\":\"" SHA1_ABC
                             "\",\"pass.json\":\"" SHA1_FOX "\"}");
    assert_int_equal(len, strlen(out));
    free(out);
}

static void same_files_any_order_same_bytes(void **state)
{
    const cm_file_t a[] = {FILE_OF("logo.png", "abc"), FILE_OF("icon.png", FOX), FILE_OF("pass.json", "{}")};
    const cm_file_t b[] = {FILE_OF("pass.json", "{}"), FILE_OF("icon.png", FOX), FILE_OF("logo.png", "abc")};
    char *x = NULL, *y = NULL;
    size_t xl = 0, yl = 0;
    assert_int_equal(cm_manifest_build(a, 3, &x, &xl), 0);
    assert_int_equal(cm_manifest_build(b, 3, &y, &yl), 0);
    assert_int_equal(xl, yl);
    assert_memory_equal(x, y, xl);
    free(x);
    free(y);
}

/* A digest the caller already knows is written as given; files without one are hashed. */
static void uses_known_digests(void **state)
{
    cm_file_t files[] = {FILE_OF("icon.png", "abc"), FILE_OF("pass.json", FOX)};
    files[0].sha1_hex = SHA1_EMPTY; /* not the digest of "abc": proves the bytes are not hashed again */
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(cm_manifest_build(files, 2, &out, &len), 0);
    assert_string_equal(out, "{\"icon.png\":\"" SHA1_EMPTY "\",\"pass.json\":\"" SHA1_FOX "\"}");
    free(out);
}

static void never_lists_manifest_or_signature(void **state)
{
    const cm_file_t files[] = {
        FILE_OF("manifest.json", "{}"),
        FILE_OF("signature", "xyz"),
        FILE_OF("icon.png", "abc"),
    };
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(cm_manifest_build(files, 3, &out, &len), 0);
    assert_string_equal(out, "{\"icon.png\":\"" SHA1_ABC "\"}");
    free(out);
    assert_true(cm_manifest_is_reserved("manifest.json"));
    assert_true(cm_manifest_is_reserved("signature"));
    assert_false(cm_manifest_is_reserved("pass.json"));
}

static void refuses_duplicate_and_empty_names(void **state)
{
    const cm_file_t dup[] = {FILE_OF("icon.png", "abc"), FILE_OF("icon.png", "abd")};
    const cm_file_t empty[] = {FILE_OF("", "abc")};
    char *out = (char *)"untouched";
    size_t len = 7;
    assert_int_equal(cm_manifest_build(dup, 2, &out, &len), -1);
    assert_int_equal(cm_manifest_build(empty, 1, &out, &len), -1);
    assert_string_equal(out, "untouched");
    assert_int_equal(len, 7);
}

static void empty_list_is_empty_object(void **state)
{
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(cm_manifest_build(NULL, 0, &out, &len), 0);
    assert_string_equal(out, "{}");
    free(out);
}

static void zip_holds_files_at_root(void **state)
{
    const cm_file_t files[] = {
        FILE_OF("pass.json", "{\"formatVersion\":1}"),
        FILE_OF("en.lproj/pass.strings", "\"a\" = \"b\";"),
        FILE_OF("empty", ""),
    };
    unsigned char *buf = NULL;
    size_t len = 0;
    char err[256] = "";
    time_t mtime = 1700000000;
    assert_int_equal(cm_bundle_zip(files, 3, mtime, &buf, &len, err, sizeof(err)), 0);
    assert_true(len > 22);

    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(buf, len, 0, &ze);
    assert_non_null(src);
    zip_t *za = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze);
    assert_non_null(za);
    assert_int_equal(zip_get_num_entries(za, 0), 3);
    for (zip_uint64_t i = 0; i < 3; i++) {
        zip_stat_t st;
        assert_int_equal(zip_stat_index(za, i, 0, &st), 0);
        assert_string_equal(st.name, files[i].name);
        assert_int_equal(st.size, files[i].len);
        /* DOS timestamps have two-second resolution */
        assert_true(st.mtime >= mtime - 2 && st.mtime <= mtime + 2);
        char content[64] = "";
        zip_file_t *zf = zip_fopen_index(za, i, 0);
        assert_non_null(zf);
        assert_int_equal(zip_fread(zf, content, sizeof(content)), (zip_int64_t)files[i].len);
        assert_memory_equal(content, files[i].data, files[i].len);
        zip_fclose(zf);
    }
    zip_close(za);
    zip_error_fini(&ze);

    unsigned char *again = NULL;
    size_t again_len = 0;
    assert_int_equal(cm_bundle_zip(files, 3, mtime, &again, &again_len, err, sizeof(err)), 0);
    assert_int_equal(again_len, len);
    assert_memory_equal(again, buf, len);
    free(again);
    free(buf);
}

/* Images and small files are stored, larger other files deflated. */
static void zip_stores_images_and_small_files(void **state)
{
    static unsigned char text[8192], image[8192];
    memset(text, 'a', sizeof(text));
    for (size_t i = 0; i < sizeof(image); i++)
        image[i] = (unsigned char)(i * 7919u >> 3);
    const cm_file_t files[] = {
        {"pass.json", (const unsigned char *)"{\"formatVersion\":1}", 19, NULL},
        {"en.lproj/pass.strings", text, sizeof(text), NULL},
        {"background@2x.png", image, sizeof(image), NULL},
        {"strip.JPG", image, sizeof(image), NULL},
    };
    const zip_uint16_t expected[] = {ZIP_CM_STORE, ZIP_CM_DEFLATE, ZIP_CM_STORE, ZIP_CM_STORE};
    unsigned char *buf = NULL;
    size_t len = 0;
    char err[256] = "";
    assert_int_equal(cm_bundle_zip(files, 4, 1700000000, &buf, &len, err, sizeof(err)), 0);
    zip_error_t ze;
    zip_error_init(&ze);
    zip_source_t *src = zip_source_buffer_create(buf, len, 0, &ze);
    zip_t *za = zip_open_from_source(src, ZIP_RDONLY | ZIP_CHECKCONS, &ze);
    assert_non_null(za);
    for (zip_uint64_t i = 0; i < 4; i++) {
        zip_stat_t st;
        assert_int_equal(zip_stat_index(za, i, 0, &st), 0);
        assert_string_equal(st.name, files[i].name);
        assert_int_equal(st.comp_method, expected[i]);
        assert_int_equal(st.size, files[i].len);
    }
    zip_close(za);
    zip_error_fini(&ze);
    free(buf);
}

static void bundle_names(void **state)
{
    assert_true(cm_bundle_name_is_safe("icon.png"));
    assert_true(cm_bundle_name_is_safe("en.lproj/logo@2x.png"));
    assert_true(cm_bundle_name_is_safe("zh-Hans.lproj/pass.strings"));
    assert_false(cm_bundle_name_is_safe(""));
    assert_false(cm_bundle_name_is_safe("/etc/passwd"));
    assert_false(cm_bundle_name_is_safe("../x.png"));
    assert_false(cm_bundle_name_is_safe("en.lproj/../x.png"));
    assert_false(cm_bundle_name_is_safe("./x.png"));
    assert_false(cm_bundle_name_is_safe("a//b"));
    assert_false(cm_bundle_name_is_safe("dir/"));
    assert_false(cm_bundle_name_is_safe("a\\b"));
    assert_false(cm_bundle_name_is_safe("with space.png"));
    assert_false(cm_bundle_name_is_safe("caf\xc3\xa9.png"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hashes_known_vectors_sorted),
        cmocka_unit_test(same_files_any_order_same_bytes),
        cmocka_unit_test(uses_known_digests),
        cmocka_unit_test(never_lists_manifest_or_signature),
        cmocka_unit_test(refuses_duplicate_and_empty_names),
        cmocka_unit_test(empty_list_is_empty_object),
        cmocka_unit_test(zip_holds_files_at_root),
        cmocka_unit_test(zip_stores_images_and_small_files),
        cmocka_unit_test(bundle_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
