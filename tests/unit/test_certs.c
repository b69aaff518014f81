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
#include <unistd.h>

#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/certs.h"

#define TEAM  "ABCDE12345"
#define GOOD  "pass.com.example.good"
#define OTHER "pass.com.example.other"

static char base[256]; /* the generated hierarchy: base/wwdr.pem, base/GOOD/, base/OTHER/ */
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
    return run("bash '%s' '%s/gen' " TEAM " " GOOD " " OTHER " >/dev/null", script, base) == 0 ? 0 : -1;
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
    assert_int_equal(cm_certs_count(certs), 2);
    /* sorted by identifier; ca/ and apns/ are not pass types */
    assert_string_equal(cm_certs_at(certs, 0)->pass_type_id, GOOD);
    assert_string_equal(cm_certs_at(certs, 1)->pass_type_id, OTHER);
    assert_null(cm_certs_at(certs, 2));
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
    };
    return cmocka_run_group_tests(tests, make_hierarchy, remove_hierarchy);
}
