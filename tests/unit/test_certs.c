/*
 * Pass type certificates (common/certs.h), on hierarchies made by tests/certs/make-dev-certs.sh in a
 * temporary folder. The script is found through PASSKIT_SOURCE_DIR, else relative to this file.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/certs.h"

#define TEAM    "ABCDE12345"
#define GOOD    "pass.com.example.good"
#define OTHER   "pass.com.example.other"
#define EXPIRED "pass.com.example.expired" /* valid 2020-01-01 to 2021-01-01 */
#define FROM_G1 "pass.com.example.g1"      /* issued by gen/ca/wwdr-g1.pem, not gen/wwdr.pem */

static char base[256]; /* the generated hierarchy: base/gen/wwdr.pem, base/gen/GOOD/, ... */
static char work[512]; /* a scratch CERTS_DIR rebuilt by each test */

static int run(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static int run(const char *fmt, ...)
{
    char cmd[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cmd, sizeof(cmd), fmt, ap);
    va_end(ap);
    return system(cmd);
}

static int make_hierarchy(void **state)
{
    char script[1024];
    const char *src = getenv("PASSKIT_SOURCE_DIR");
    if (src != NULL && src[0] != '\0') {
        snprintf(script, sizeof(script), "%s/tests/certs/make-dev-certs.sh", src);
    } else {
        /* __FILE__ is .../tests/unit/test_certs.c */
        snprintf(script, sizeof(script), "%s", __FILE__);
        char *slash = strrchr(script, '/');
        if (slash == NULL)
            return -1;
        snprintf(slash, sizeof(script) - (size_t)(slash - script), "/../certs/make-dev-certs.sh");
    }
    snprintf(base, sizeof(base), "/tmp/test_certs.XXXXXX");
    if (mkdtemp(base) == NULL)
        return -1;
    snprintf(work, sizeof(work), "%s/work", base);
    if (run("bash '%s' '%s/gen' " TEAM " " GOOD " " OTHER " >/dev/null", script, base) != 0 ||
        run("bash '%s' --expired '%s/gen' " TEAM " " EXPIRED " >/dev/null", script, base) != 0 ||
        run("bash '%s' --issuer g1 '%s/gen' " TEAM " " FROM_G1 " >/dev/null", script, base) != 0)
        return -1;
    return 0;
}

static int remove_hierarchy(void **state)
{
    return run("rm -rf '%s'", base) == 0 ? 0 : -1;
}

/* Empties the scratch folder. */
static void reset_work(void)
{
    assert_int_equal(run("rm -rf '%s' && mkdir -p '%s'", work, work), 0);
}

/* Copies a generated file to work/<dst>, creating the folder. */
static void put(const char *gen_file, const char *dst)
{
    assert_int_equal(run("mkdir -p \"$(dirname '%s/%s')\" && cp '%s/gen/%s' '%s/%s'", work, dst, base,
                         gen_file, work, dst),
                     0);
}

static void loads_good_folder(void **state)
{
    char dir[600], err[1024] = "";
    cm_certs_t *certs = NULL;
    snprintf(dir, sizeof(dir), "%s/gen", base);
    assert_int_equal(cm_certs_load(dir, 1, &certs, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_int_equal(cm_certs_count(certs), 4); /* cm_certs_load checks neither dates nor issuer */
    /* sorted by identifier; ca/ and apns/ are not pass types */
    assert_string_equal(cm_certs_at(certs, 0)->pass_type_id, EXPIRED);
    assert_string_equal(cm_certs_at(certs, 1)->pass_type_id, FROM_G1);
    assert_string_equal(cm_certs_at(certs, 2)->pass_type_id, GOOD);
    assert_string_equal(cm_certs_at(certs, 3)->pass_type_id, OTHER);
    assert_null(cm_certs_at(certs, 4));
    const cm_pass_identity_t *id = cm_certs_find(certs, GOOD);
    assert_non_null(id);
    assert_string_equal(id->team_id, TEAM);
    assert_non_null(id->cert);
    assert_non_null(id->key);
    assert_non_null(strstr(id->cert_path, GOOD "/certificate.pem"));
    assert_non_null(strstr(id->key_path, GOOD "/private-key.pem"));
    /* make-dev-certs.sh issues pass certificates for 365 days */
    assert_true(id->not_after - id->not_before >= 364 * 86400 &&
                id->not_after - id->not_before <= 366 * 86400);
    assert_null(cm_certs_find(certs, "pass.com.example.none"));
    X509 *wwdr = cm_certs_wwdr(certs);
    assert_non_null(wwdr);
    assert_int_equal(X509_check_issued(wwdr, id->cert), X509_V_OK);
    cm_certs_free(certs);
    cm_certs_free(NULL);
}

static void folder_name_must_equal_uid(void **state)
{
    char err[1024] = "";
    cm_certs_t *certs = (cm_certs_t *)state; /* any non-NULL value: must stay untouched */
    reset_work();
    put("wwdr.pem", "wwdr.pem");
    put(GOOD "/certificate.pem", "pass.com.example.renamed/certificate.pem");
    put(GOOD "/private-key.pem", "pass.com.example.renamed/private-key.pem");
    assert_int_equal(cm_certs_load(work, 1, &certs, err, sizeof(err)), -1);
    assert_ptr_equal(certs, (cm_certs_t *)state);
    assert_non_null(strstr(err, "pass.com.example.renamed/certificate.pem"));
    assert_non_null(
        strstr(err, "subject UID '" GOOD "' differs from the folder name 'pass.com.example.renamed'"));
}

static void key_must_match_certificate(void **state)
{
    char err[1024] = "";
    cm_certs_t *certs = NULL;
    reset_work();
    put("wwdr.pem", "wwdr.pem");
    put(GOOD "/certificate.pem", GOOD "/certificate.pem");
    put(OTHER "/private-key.pem", GOOD "/private-key.pem");
    assert_int_equal(cm_certs_load(work, 1, &certs, err, sizeof(err)), -1);
    assert_null(certs);
    assert_non_null(strstr(err, GOOD "/private-key.pem does not match the certificate"));
}

static void wwdr_required_or_optional(void **state)
{
    char err[1024] = "";
    cm_certs_t *certs = NULL;
    reset_work();
    put(GOOD "/certificate.pem", GOOD "/certificate.pem");
    put(GOOD "/private-key.pem", GOOD "/private-key.pem");
    assert_int_equal(cm_certs_load(work, 1, &certs, err, sizeof(err)), -1);
    assert_null(certs);
    assert_non_null(strstr(err, "wwdr.pem: cannot open"));

    err[0] = '\0';
    assert_int_equal(cm_certs_load(work, 0, &certs, err, sizeof(err)), 0);
    assert_non_null(certs);
    assert_null(cm_certs_wwdr(certs));
    assert_int_equal(cm_certs_count(certs), 1);
    cm_certs_free(certs);
}

static void reports_every_problem(void **state)
{
    char err[2048] = "";
    cm_certs_t *certs = NULL;
    reset_work();
    put("wwdr.pem", "wwdr.pem");
    put(GOOD "/certificate.pem", "pass.com.example.renamed/certificate.pem");
    put(GOOD "/private-key.pem", "pass.com.example.renamed/private-key.pem");
    put(OTHER "/certificate.pem", OTHER "/certificate.pem");
    put(GOOD "/private-key.pem", OTHER "/private-key.pem");
    put(GOOD "/certificate.pem", "pass.com.example.nokey/certificate.pem");
    assert_int_equal(run("mkdir -p '%s/pass.com.example.garbage' && echo nonsense > "
                         "'%s/pass.com.example.garbage/certificate.pem'"
                         " && cp '%s/gen/%s/private-key.pem' '%s/pass.com.example.garbage/'",
                         work, work, base, GOOD, work),
                     0);
    assert_int_equal(cm_certs_load(work, 1, &certs, err, sizeof(err)), -1);
    assert_null(certs);
    assert_non_null(strstr(err, "pass.com.example.garbage/certificate.pem: not a PEM certificate"));
    assert_non_null(strstr(err, "pass.com.example.nokey/private-key.pem: cannot open"));
    assert_non_null(strstr(err, OTHER "/private-key.pem does not match"));
    assert_non_null(strstr(err, "differs from the folder name 'pass.com.example.renamed'"));
    assert_non_null(strstr(err, "; "));
}

static void empty_or_missing_folder_fails(void **state)
{
    char err[1024] = "", missing[600];
    cm_certs_t *certs = NULL;
    reset_work();
    put("wwdr.pem", "wwdr.pem");
    assert_int_equal(run("mkdir -p '%s/not-a-pass-type'", work), 0);
    assert_int_equal(cm_certs_load(work, 1, &certs, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "no pass type folder"));

    snprintf(missing, sizeof(missing), "%s/does-not-exist", base);
    err[0] = '\0';
    assert_int_equal(cm_certs_load(missing, 0, &certs, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "cannot open the certificates folder"));
    assert_null(certs);
}

static void small_error_buffer_is_terminated(void **state)
{
    char err[16];
    cm_certs_t *certs = NULL;
    memset(err, 'x', sizeof(err));
    reset_work();
    assert_int_equal(cm_certs_load(work, 1, &certs, err, sizeof(err)), -1);
    assert_non_null(memchr(err, '\0', sizeof(err)));
}

/* What cm_certs_load_checked refused, in order. */
struct refusals {
    char text[4096];
    int count;
};

static void collect(void *data, const char *ptid, const char *problems)
{
    struct refusals *r = data;
    size_t used = strlen(r->text);
    snprintf(r->text + used, sizeof(r->text) - used, "[%s] %s\n", ptid, problems);
    r->count++;
}

static void checked_load_refuses_one_by_one(void **state)
{
    char dir[600], err[1024] = "", expected[4096];
    cm_certs_t *certs = NULL;
    struct refusals r = {"", 0};
    snprintf(dir, sizeof(dir), "%s/gen", base);
    cm_certs_options_t opt = {.wwdr_path = NULL, .now = time(NULL)};
    assert_int_equal(cm_certs_load_checked(dir, &opt, collect, &r, &certs, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_int_equal(cm_certs_count(certs), 2);
    assert_non_null(cm_certs_find(certs, GOOD));
    assert_non_null(cm_certs_find(certs, OTHER));
    snprintf(
        expected, sizeof(expected),
        "[" EXPIRED "] %s/" EXPIRED "/certificate.pem: expired (notBefore 2020-01-01T00:00:00Z, notAfter "
        "2021-01-01T00:00:00Z)\n"
        "[" FROM_G1 "] %s/" FROM_G1 "/certificate.pem: issued by 'CN=Test Worldwide Developer Relations "
        "Certification Authority,OU=PassKit Backend Test Worldwide Developer Relations,O=PassKit Backend "
        "Test,C=US', not by the configured WWDR 'CN=Test Worldwide Developer Relations Certification "
        "Authority,OU=G4,O=PassKit Backend Test,C=US' (%s/wwdr.pem)\n",
        dir, dir, dir);
    assert_string_equal(r.text, expected);
    assert_string_equal(cm_certs_wwdr_source(certs), strcat(strcpy(expected, dir), "/wwdr.pem"));

    /* cm_certs_add shares the certificate and key: they outlive the set they came from */
    cm_certs_t *other = NULL;
    r.text[0] = '\0';
    opt.wwdr_path = expected; /* dir/wwdr.pem, named */
    assert_int_equal(run("rm -rf '%s' && mkdir -p '%s/" OTHER "'", work, work), 0);
    put(OTHER "/certificate.pem", OTHER "/certificate.pem");
    put(OTHER "/private-key.pem", OTHER "/private-key.pem");
    assert_int_equal(cm_certs_load_checked(work, &opt, collect, &r, &other, err, sizeof(err)), 0);
    assert_int_equal(cm_certs_count(other), 1);
    assert_int_equal(cm_certs_add(other, cm_certs_find(certs, GOOD)), 0);
    assert_int_equal(cm_certs_add(other, cm_certs_find(certs, GOOD)), -1); /* already there */
    cm_certs_free(certs);
    assert_int_equal(cm_certs_count(other), 2);
    assert_string_equal(cm_certs_at(other, 0)->pass_type_id, GOOD); /* kept sorted */
    const cm_pass_identity_t *good = cm_certs_find(other, GOOD);
    assert_int_equal(X509_check_private_key(good->cert, good->key), 1);
    assert_string_equal(good->team_id, TEAM);
    assert_int_equal(cm_certs_check_identity(good, cm_certs_wwdr(other), "x", time(NULL), err, sizeof(err)),
                     0);
    cm_certs_free(other);
}

static void checked_load_default_wwdr_is_apple_g4(void **state)
{
    char err[1024] = "";
    cm_certs_t *certs = NULL;
    struct refusals r = {"", 0};
    reset_work();
    put(GOOD "/certificate.pem", GOOD "/certificate.pem");
    put(GOOD "/private-key.pem", GOOD "/private-key.pem");
    cm_certs_options_t opt = {.wwdr_path = "", .now = time(NULL)};
    assert_int_equal(cm_certs_load_checked(work, &opt, collect, &r, &certs, err, sizeof(err)), 0);
    assert_int_equal(cm_certs_count(certs), 0);
    assert_int_equal(r.count, 1);
    assert_non_null(strstr(r.text,
                           "not by the configured WWDR 'C=US,O=Apple Inc.,OU=G4,CN=Apple Worldwide "
                           "Developer Relations Certification Authority' (" CM_CERTS_BUILTIN_WWDR ")"));
    assert_string_equal(cm_certs_wwdr_source(certs), CM_CERTS_BUILTIN_WWDR);
    /* the compiled-in copy is Apple's G4: serial 13DC77955271E53DC632E8CCFFE521F3CCC5CED2 */
    X509 *g4 = cm_certs_wwdr(certs);
    unsigned char md[32];
    unsigned int len = 0;
    static const unsigned char g4_sha256[32] = {
        0xEA, 0x47, 0x57, 0x88, 0x55, 0x38, 0xDD, 0x8C, 0xB5, 0x9F, 0xF4, 0x55, 0x6F, 0x67, 0x60, 0x87,
        0xD8, 0x3C, 0x85, 0xE7, 0x09, 0x02, 0xC1, 0x22, 0xE4, 0x2C, 0x08, 0x08, 0xB5, 0xBC, 0xE1, 0x4C};
    assert_int_equal(X509_digest(g4, EVP_sha256(), md, &len), 1);
    assert_int_equal(len, 32);
    assert_memory_equal(md, g4_sha256, 32);
    cm_certs_free(certs);

    /* a WWDR that cannot be read fails the whole load */
    certs = NULL;
    opt.wwdr_path = "/nonexistent/wwdr.pem";
    assert_int_equal(cm_certs_load_checked(work, &opt, collect, &r, &certs, err, sizeof(err)), -1);
    assert_null(certs);
    assert_string_equal(err, "/nonexistent/wwdr.pem: cannot open: No such file or directory");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(loads_good_folder),
        cmocka_unit_test(folder_name_must_equal_uid),
        cmocka_unit_test(key_must_match_certificate),
        cmocka_unit_test(wwdr_required_or_optional),
        cmocka_unit_test(reports_every_problem),
        cmocka_unit_test(empty_or_missing_folder_fails),
        cmocka_unit_test(small_error_buffer_is_terminated),
        cmocka_unit_test(checked_load_refuses_one_by_one),
        cmocka_unit_test(checked_load_default_wwdr_is_apple_g4),
    };
    return cmocka_run_group_tests(tests, make_hierarchy, remove_hierarchy);
}
