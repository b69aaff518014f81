/*
 * The bundle reader (common/pkpass_reader.h) and pass.strings (common/pkpass_strings.h) on archives
 * generated here: a certificate hierarchy shaped like Apple's (root, a WWDR-like intermediate with
 * OU=G4, a Pass Type ID certificate) made with OpenSSL, manifests from cm_manifest_build, detached CMS
 * signatures like the signer's, archives from cm_bundle_zip. Each case asserts the exact verdict and
 * problem sentences.
 */
#define _GNU_SOURCE
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/bn.h>
#include <openssl/cms.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "common/bundle_zip.h"
#include "common/manifest.h"
#include "common/pkpass_reader.h"
#include "common/pkpass_strings.h"

#define PTID "pass.com.example.unit"
#define TEAM "TEAMUNIT01"
#define DAY  (24 * 3600L)

static EVP_PKEY *root_key, *wwdr_key, *other_key, *pass_key;
static X509 *root, *wwdr, *other_int, *pass_cert, *expired_cert;
static X509_STORE *trust, *foreign_trust;

/* ---- certificates ---------------------------------------------------------------------------------- */

static void add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    assert_non_null(ext);
    assert_int_equal(X509_add_ext(cert, ext, -1), 1);
    X509_EXTENSION_free(ext);
}

/* fields: "UID", value, "CN", value, ..., NULL. issuer NULL: self-signed. */
static X509 *make_cert(EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, int is_ca, uint64_t serial,
                       long from, long to, ...)
{
    X509 *x = X509_new();
    assert_non_null(x);
    X509_set_version(x, 2);
    BIGNUM *bn = BN_new();
    BN_set_word(bn, serial);
    BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x));
    BN_free(bn);
    X509_gmtime_adj(X509_getm_notBefore(x), from);
    X509_gmtime_adj(X509_getm_notAfter(x), to);
    X509_set_pubkey(x, key);
    X509_NAME *name = X509_get_subject_name(x);
    va_list ap;
    va_start(ap, to);
    const char *field;
    while ((field = va_arg(ap, const char *)) != NULL) {
        const char *value = va_arg(ap, const char *);
        assert_int_equal(
            X509_NAME_add_entry_by_txt(name, field, MBSTRING_UTF8, (const unsigned char *)value, -1, -1, 0),
            1);
    }
    va_end(ap);
    X509_set_issuer_name(x, issuer != NULL ? X509_get_subject_name(issuer) : name);
    add_ext(x, issuer != NULL ? issuer : x, NID_basic_constraints,
            is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    add_ext(x, issuer != NULL ? issuer : x, NID_subject_key_identifier, "hash");
    if (issuer != NULL)
        add_ext(x, issuer, NID_authority_key_identifier, "keyid");
    if (is_ca)
        add_ext(x, issuer != NULL ? issuer : x, NID_key_usage, "critical,keyCertSign,cRLSign");
    else
        add_ext(x, issuer, NID_ext_key_usage, "clientAuth,1.2.840.113635.100.4.14");
    assert_true(X509_sign(x, issuer_key != NULL ? issuer_key : key, EVP_sha256()) > 0);
    return x;
}

static X509_STORE *store_of(X509 *a, X509 *b)
{
    X509_STORE *s = X509_STORE_new();
    assert_int_equal(X509_STORE_add_cert(s, a), 1);
    if (b != NULL)
        assert_int_equal(X509_STORE_add_cert(s, b), 1);
    return s;
}

static int setup(void **state)
{
    root_key = EVP_EC_gen("P-256");
    wwdr_key = EVP_EC_gen("P-256");
    other_key = EVP_EC_gen("P-256");
    pass_key = EVP_EC_gen("P-256");
    root = make_cert(root_key, NULL, NULL, 1, 1, -100 * DAY, 3650 * DAY, "C", "US", "O", "Unit", "CN",
                     "Unit Root CA", NULL);
    wwdr = make_cert(wwdr_key, root, root_key, 1, 2, -100 * DAY, 3000 * DAY, "C", "US", "O", "Unit", "OU",
                     "G4", "CN", "Unit Worldwide Developer Relations Certification Authority", NULL);
    other_int = make_cert(other_key, root, root_key, 1, 3, -DAY, 3000 * DAY, "C", "US", "O", "Unit", "CN",
                          "Other Intermediate", NULL);
    pass_cert = make_cert(pass_key, wwdr, wwdr_key, 0, 4, -DAY, 365 * DAY, "UID", PTID, "CN",
                          "Pass Type ID: " PTID, "OU", TEAM, "O", "Unit Issuer", "C", "US", NULL);
    expired_cert = make_cert(pass_key, wwdr, wwdr_key, 0, 5, -30 * DAY, -10 * DAY, "UID", PTID, "CN",
                             "Pass Type ID: " PTID, "OU", TEAM, "O", "Unit Issuer", "C", "US", NULL);
    EVP_PKEY *foreign_key = EVP_EC_gen("P-256");
    X509 *foreign = make_cert(foreign_key, NULL, NULL, 1, 9, -DAY, DAY, "CN", "Foreign Root", NULL);
    trust = store_of(root, wwdr);
    foreign_trust = store_of(foreign, NULL);
    X509_free(foreign);
    EVP_PKEY_free(foreign_key);
    return 0;
}

static int teardown(void **state)
{
    X509_STORE_free(trust);
    X509_STORE_free(foreign_trust);
    X509 *certs[] = {root, wwdr, other_int, pass_cert, expired_cert};
    for (size_t i = 0; i < 5; i++)
        X509_free(certs[i]);
    EVP_PKEY *keys[] = {root_key, wwdr_key, other_key, pass_key};
    for (size_t i = 0; i < 4; i++)
        EVP_PKEY_free(keys[i]);
    return 0;
}

/* ---- archives -------------------------------------------------------------------------------------- */

static const char pass_json[] =
    "{\"formatVersion\":1,\"passTypeIdentifier\":\"" PTID "\",\"teamIdentifier\":\"" TEAM
    "\",\"serialNumber\":\"1\",\"organizationName\":\"O\",\"description\":\"D\","
    "\"generic\":{}}";
/* UTF-16LE with a byte order mark: "a" = "ä"; */
static const unsigned char strings_le[] = {0xff, 0xfe, '"', 0, 'a',  0, '"', 0, ' ', 0, '=',  0,
                                           ' ',  0,    '"', 0, 0xe4, 0, '"', 0, ';', 0, '\n', 0};

#define FILE_OF(n, d, l) ((cm_file_t){.name = (n), .data = (const unsigned char *)(d), .len = (l)})
#define TEXT(n, s)       FILE_OF((n), (s), strlen(s))

struct spec {
    cm_file_t files[8]; /* hashed into the manifest */
    size_t count;
    const char *manifest; /* used as is instead of the computed manifest */
    cm_file_t after[6]; /* put in the archive after the manifest was computed (replacing a same-named file) */
    size_t after_count;
    const char *drop; /* hashed, then left out of the archive */
    int unsigned_;
    X509 *signer;   /* default pass_cert */
    X509 *extra[2]; /* embedded besides the signer; default wwdr */
    size_t extra_count;
    int no_extra;
    const char *signed_content; /* signs these bytes instead of the manifest */
};

static void default_files(struct spec *s)
{
    s->files[0] = TEXT("pass.json", pass_json);
    s->files[1] = TEXT("icon.png", "not really a PNG");
    s->files[2] = FILE_OF("en.lproj/pass.strings", strings_le, sizeof(strings_le));
    s->count = 3;
}

static unsigned char *sign(const struct spec *s, const char *content, size_t len, size_t *out_len)
{
    STACK_OF(X509) *extra = sk_X509_new_null();
    if (!s->no_extra) {
        if (s->extra_count == 0)
            sk_X509_push(extra, wwdr);
        for (size_t i = 0; i < s->extra_count; i++)
            sk_X509_push(extra, s->extra[i]);
    }
    BIO *in = BIO_new_mem_buf(content, (int)len);
    CMS_ContentInfo *cms =
        CMS_sign(s->signer != NULL ? s->signer : pass_cert, pass_key, extra, in, CMS_DETACHED | CMS_BINARY);
    assert_non_null(cms);
    unsigned char *der = NULL;
    int n = i2d_CMS_ContentInfo(cms, &der);
    assert_true(n > 0);
    unsigned char *copy = malloc((size_t)n);
    memcpy(copy, der, (size_t)n);
    OPENSSL_free(der);
    CMS_ContentInfo_free(cms);
    BIO_free(in);
    sk_X509_free(extra);
    *out_len = (size_t)n;
    return copy;
}

static unsigned char *build(const struct spec *s, size_t *out_len)
{
    char *manifest = NULL;
    size_t manifest_len = 0;
    if (s->manifest != NULL) {
        manifest = strdup(s->manifest);
        manifest_len = strlen(manifest);
    } else {
        assert_int_equal(cm_manifest_build(s->files, s->count, &manifest, &manifest_len), 0);
    }
    cm_file_t files[20];
    size_t n = 0;
    for (size_t i = 0; i < s->count; i++) {
        int replaced = s->drop != NULL && strcmp(s->files[i].name, s->drop) == 0;
        for (size_t j = 0; j < s->after_count; j++)
            replaced |= strcmp(s->after[j].name, s->files[i].name) == 0;
        if (!replaced)
            files[n++] = s->files[i];
    }
    files[n++] = FILE_OF("manifest.json", manifest, manifest_len);
    unsigned char *signature = NULL;
    size_t signature_len = 0;
    if (!s->unsigned_) {
        const char *content = s->signed_content != NULL ? s->signed_content : manifest;
        signature =
            sign(s, content, s->signed_content != NULL ? strlen(content) : manifest_len, &signature_len);
        files[n++] = FILE_OF("signature", signature, signature_len);
    }
    for (size_t j = 0; j < s->after_count; j++)
        files[n++] = s->after[j];
    unsigned char *zip = NULL;
    char err[256];
    assert_int_equal(cm_bundle_zip(files, n, 1700000000, &zip, out_len, err, sizeof(err)), 0);
    free(manifest);
    free(signature);
    return zip;
}

static cm_pkpass_report_t *inspect_with(const struct spec *s, const cm_pkpass_options_t *opts)
{
    size_t len;
    unsigned char *zip = build(s, &len);
    cm_pkpass_report_t *r = NULL;
    assert_int_equal(cm_pkpass_inspect(zip, len, opts, &r), 0);
    free(zip);
    return r;
}

static cm_pkpass_report_t *inspect(const struct spec *s)
{
    cm_pkpass_options_t opts = {.trust = trust};
    return inspect_with(s, &opts);
}

static cm_pkpass_report_t *inspect_bytes(const void *data, size_t len, const cm_pkpass_options_t *opts)
{
    cm_pkpass_report_t *r = NULL;
    assert_int_equal(cm_pkpass_inspect(data, len, opts, &r), 0);
    return r;
}

/* Asserts the verdict and exactly the given problems (NULL-terminated), in order. */
static void expect(const cm_pkpass_report_t *r, cm_pkpass_verdict_t verdict, ...)
{
    if (cm_pkpass_report_verdict(r) != verdict) {
        char *dump = json_dumps(cm_pkpass_report_json(r), JSON_INDENT(1));
        print_error("report: %s\n", dump);
        free(dump);
    }
    assert_string_equal(cm_pkpass_verdict_name(cm_pkpass_report_verdict(r)), cm_pkpass_verdict_name(verdict));
    va_list ap;
    va_start(ap, verdict);
    size_t i = 0;
    const char *p;
    while ((p = va_arg(ap, const char *)) != NULL) {
        assert_true(i < cm_pkpass_report_problem_count(r));
        assert_string_equal(cm_pkpass_report_problem(r, i), p);
        i++;
    }
    va_end(ap);
    assert_int_equal(cm_pkpass_report_problem_count(r), i);
}

static json_t *at(const cm_pkpass_report_t *r, const char *path)
{
    json_t *v = cm_pkpass_report_json(r);
    char buf[128];
    snprintf(buf, sizeof(buf), "%s", path);
    for (char *k = strtok(buf, "."); k != NULL; k = strtok(NULL, "."))
        v = json_is_array(v) ? json_array_get(v, (size_t)atoi(k)) : json_object_get(v, k);
    return v;
}

static void expect_str(const cm_pkpass_report_t *r, const char *path, const char *value)
{
    json_t *v = at(r, path);
    if (!json_is_string(v))
        print_error("%s is not a string\n", path);
    assert_true(json_is_string(v));
    assert_string_equal(json_string_value(v), value);
}

static int has_warning(const cm_pkpass_report_t *r, const char *fragment)
{
    json_t *w = at(r, "warnings");
    for (size_t i = 0; i < json_array_size(w); i++)
        if (strstr(json_string_value(json_array_get(w, i)), fragment) != NULL)
            return 1;
    return 0;
}

/* ---- cases ----------------------------------------------------------------------------------------- */

static void valid_bundle(void **state)
{
    struct spec s = {0};
    default_files(&s);
    cm_pkpass_report_t *r = inspect(&s);
    expect(r, CM_PKPASS_VALID, NULL);
    assert_int_equal(json_array_size(at(r, "warnings")), 0);
    expect_str(r, "manifest.digest", "sha1");
    assert_int_equal(json_integer_value(at(r, "manifest.entries")), 3);
    expect_str(r, "signature.digest", "sha256");
    expect_str(r, "signature.signerIdentifier", "issuerAndSerialNumber");
    assert_true(json_is_string(at(r, "signature.signingTime")));
    expect_str(r, "signature.signer.uid", PTID);
    expect_str(r, "signature.signer.teamIdentifier", TEAM);
    expect_str(r, "signature.signer.commonName", "Pass Type ID: " PTID);
    assert_int_equal(json_array_size(at(r, "signature.certificates")), 2);
    assert_true(json_is_true(at(r, "signature.contentVerified")));
    assert_true(json_is_true(at(r, "signature.issuerEmbedded")));
    assert_true(json_is_true(at(r, "signature.chain.verified")));
    expect_str(r, "signature.chain.path.0", "Pass Type ID: " PTID);
    expect_str(r, "signature.chain.path.1", "WWDR G4");
    expect_str(r, "signature.chain.path.2", "Unit Root CA");
    assert_true(json_is_true(at(r, "passJson.valid")));
    expect_str(r, "passJson.passTypeIdentifier", PTID);
    expect_str(r, "passJson.styles.0", "generic");
    json_t *strings = json_object_get(at(r, "strings"), "en.lproj/pass.strings");
    assert_string_equal(json_string_value(json_object_get(strings, "encoding")), "utf-16le");
    assert_string_equal(json_string_value(json_object_get(json_object_get(strings, "entries"), "a")),
                        "\xc3\xa4");
    const cm_file_t *f = cm_pkpass_report_file(r, "pass.json");
    assert_non_null(f);
    assert_memory_equal(f->data, pass_json, strlen(pass_json));
    assert_null(cm_pkpass_report_file(r, "nothing.png"));
    cm_pkpass_report_free(r);
}

static void tampered_file(void **state)
{
    struct spec s = {0};
    default_files(&s);
    s.after[s.after_count++] = TEXT("pass.json", "{\"formatVersion\":1,\"serialNumber\":\"edited\"}");
    cm_pkpass_report_t *r = inspect(&s);
    expect(r, CM_PKPASS_TAMPERED, "pass.json does not match its manifest entry", NULL);
    expect_str(r, "manifest.mismatched.0", "pass.json");
    /* The signature over manifest.json is still fine: only the manifest check catches it. */
    assert_true(json_is_true(at(r, "signature.contentVerified")));
    cm_pkpass_report_free(r);
}

static void missing_file(void **state)
{
    struct spec s = {0};
    default_files(&s);
    s.drop = "icon.png";
    cm_pkpass_report_t *r = inspect(&s);
    expect(r, CM_PKPASS_TAMPERED, "icon.png is listed in the manifest but missing from the archive", NULL);
    expect_str(r, "manifest.missing.0", "icon.png");
    assert_true(has_warning(r, "Wallet refuses a pass without one"));
    cm_pkpass_report_free(r);
}

static void extra_file_and_ignorable_entries(void **state)
{
    struct spec s = {0};
    default_files(&s);
    s.after[s.after_count++] = TEXT("__MACOSX/._icon.png", "resource fork");
    s.after[s.after_count++] = TEXT(".DS_Store", "finder");
    s.after[s.after_count++] = TEXT("en.lproj/.DS_Store", "finder");
    cm_pkpass_report_t *r = inspect(&s);
    expect(r, CM_PKPASS_VALID, NULL);
    assert_int_equal(json_array_size(at(r, "ignored")), 3);
    expect_str(r, "ignored.0", "__MACOSX/._icon.png");
    expect_str(r, "ignored.2", "en.lproj/.DS_Store");
    cm_pkpass_report_free(r);

    s.after[s.after_count++] = TEXT("extra.png", "smuggled");
    s.after[s.after_count++] = TEXT("en.lproj/extra.png", "smuggled");
    r = inspect(&s);
    expect(r, CM_PKPASS_TAMPERED, "extra.png is in the archive but not in the manifest",
           "en.lproj/extra.png is in the archive but not in the manifest", NULL);
    assert_int_equal(json_array_size(at(r, "ignored")), 3);
    cm_pkpass_report_free(r);
}

static void manifest_lists_signature_and_itself(void **state)
{
    struct spec s = {0};
    default_files(&s);
    char *built = NULL;
    size_t built_len;
    assert_int_equal(cm_manifest_build(s.files, s.count, &built, &built_len), 0);
    json_t *m = json_loads(built, 0, NULL);
    json_object_set_new(m, "signature", json_string("0000000000000000000000000000000000000000"));
    json_object_set_new(m, "manifest.json", json_string("0000000000000000000000000000000000000000"));
    char *text = json_dumps(m, JSON_COMPACT | JSON_SORT_KEYS);
    s.manifest = text;
    cm_pkpass_report_t *r = inspect(&s);
    expect(r, CM_PKPASS_TAMPERED, "the manifest lists manifest.json, which must not be listed",
           "the manifest lists signature, which must not be listed", NULL);
    assert_int_equal(json_array_size(at(r, "manifest.listsReserved")), 2);
    cm_pkpass_report_free(r);
    free(text);
    free(built);
    json_decref(m);
}

static void sha256_manifest_is_accepted(void **state)
{
    struct spec s = {0};
    default_files(&s);
    json_t *m = json_object();
    for (size_t i = 0; i < s.count; i++) {
        unsigned char d[32];
        char hex[65];
        EVP_Digest(s.files[i].data, s.files[i].len, d, NULL, EVP_sha256(), NULL);
        for (int k = 0; k < 32; k++)
            snprintf(hex + 2 * k, 3, "%02X", d[k]); /* upper case is read too */
        json_object_set_new(m, s.files[i].name, json_string(hex));
    }
    char *text = json_dumps(m, JSON_COMPACT);
    s.manifest = text;
    cm_pkpass_report_t *r = inspect(&s);
    expect(r, CM_PKPASS_VALID, NULL);
    expect_str(r, "manifest.digest", "sha256");
    cm_pkpass_report_free(r);
    /* A digest of another length is no digest. */
    json_object_set_new(m, "icon.png", json_string("abc"));
    free(text);
    text = json_dumps(m, JSON_COMPACT);
    s.manifest = text;
    r = inspect(&s);
    expect(r, CM_PKPASS_TAMPERED, "the manifest entry of icon.png is not a SHA-1 or SHA-256 hex digest",
           NULL);
    cm_pkpass_report_free(r);
    free(text);
    json_decref(m);
}

static void signature_over_other_content(void **state)
{
    struct spec s = {0};
    default_files(&s);
    s.signed_content = "{\"pass.json\":\"0000000000000000000000000000000000000000\"}";
    cm_pkpass_report_t *r = inspect(&s);
    assert_int_equal(cm_pkpass_report_verdict(r), CM_PKPASS_TAMPERED);
    assert_int_equal(cm_pkpass_report_problem_count(r), 1);
    const char *p = cm_pkpass_report_problem(r, 0);
    assert_non_null(strstr(p, "the signature does not match manifest.json ("));
    assert_non_null(strstr(p, "content verify error"));
    assert_true(json_is_false(at(r, "signature.contentVerified")));
    cm_pkpass_report_free(r);
}

static void unsigned_bundle(void **state)
{
    struct spec s = {0};
    default_files(&s);
    s.unsigned_ = 1;
    cm_pkpass_report_t *r = inspect(&s);
    expect(r, CM_PKPASS_UNSIGNED, NULL);
    assert_true(json_is_null(at(r, "signature")));
    expect_str(r, "manifest.digest", "sha1");
    cm_pkpass_report_free(r);
}

static void wrong_or_no_intermediate(void **state)
{
    struct spec s = {0};
    default_files(&s);
    s.extra[s.extra_count++] = other_int;
    cm_pkpass_report_t *r = inspect(&s);
    expect(r, CM_PKPASS_WRONG_INTERMEDIATE,
           "wrong intermediate: the signer certificate was issued by Unit Worldwide Developer Relations "
           "Certification Authority, OU=G4, which the signature does not embed; it embeds Other Intermediate",
           NULL);
    /* The trust store holds the right intermediate, so the chain itself verifies. */
    assert_true(json_is_true(at(r, "signature.chain.verified")));
    assert_true(json_is_false(at(r, "signature.issuerEmbedded")));
    cm_pkpass_report_free(r);

    s.extra_count = 0;
    s.no_extra = 1;
    r = inspect(&s);
    expect(
        r, CM_PKPASS_WRONG_INTERMEDIATE,
        "the signature embeds no intermediate: it must hold the signer certificate's issuer Unit Worldwide "
        "Developer Relations Certification Authority, OU=G4",
        NULL);
    cm_pkpass_report_free(r);
}

static void untrusted_chain(void **state)
{
    struct spec s = {0};
    default_files(&s);
    cm_pkpass_options_t opts = {.trust = foreign_trust};
    cm_pkpass_report_t *r = inspect_with(&s, &opts);
    expect(
        r, CM_PKPASS_UNTRUSTED_CHAIN,
        "the signer certificate's chain does not verify: unable to get local issuer certificate (at depth 1)",
        NULL);
    cm_pkpass_report_free(r);
    r = inspect_with(&s, NULL);
    expect(r, CM_PKPASS_UNTRUSTED_CHAIN, "no trust store was given: the certificate chain was not checked",
           NULL);
    cm_pkpass_report_free(r);
}

static void expired_signer(void **state)
{
    struct spec s = {0};
    default_files(&s);
    s.signer = expired_cert;
    cm_pkpass_report_t *r = inspect(&s);
    expect(r, CM_PKPASS_UNTRUSTED_CHAIN,
           "the signer certificate's chain does not verify: certificate has expired (at depth 0)", NULL);
    cm_pkpass_report_free(r);
    cm_pkpass_options_t opts = {.trust = trust, .ignore_expiry = 1};
    r = inspect_with(&s, &opts);
    expect(r, CM_PKPASS_VALID, NULL);
    assert_true(has_warning(r, "the signer certificate expired on "));
    assert_true(has_warning(r, "(expiry ignored)"));
    cm_pkpass_report_free(r);
    opts = (cm_pkpass_options_t){.trust = trust, .at_time = time(NULL) - 20 * DAY};
    r = inspect_with(&s, &opts);
    expect(r, CM_PKPASS_VALID, NULL);
    cm_pkpass_report_free(r);
}

static void identity_and_pass_json_warnings(void **state)
{
    struct spec s = {0};
    default_files(&s);
    s.files[0] = TEXT("pass.json", "{\"formatVersion\": 1,\n \"passTypeIdentifier\": \"pass.other\",\n}");
    cm_pkpass_report_t *r = inspect(&s);
    expect(r, CM_PKPASS_VALID, NULL);
    assert_true(json_is_false(at(r, "passJson.valid")));
    assert_int_equal(json_integer_value(at(r, "passJson.line")), 3);
    assert_true(has_warning(r, "pass.json is not strict JSON: "));
    assert_true(has_warning(r, "(a trailing comma before it?)"));
    cm_pkpass_report_free(r);
    s.files[0] =
        TEXT("pass.json", "{\"passTypeIdentifier\": \"pass.other\", \"teamIdentifier\": \"" TEAM "\"}");
    r = inspect(&s);
    expect(r, CM_PKPASS_VALID, NULL);
    assert_true(
        has_warning(r, "pass.json passTypeIdentifier \"pass.other\" differs from the signer certificate's "
                       "UID \"" PTID "\" (Wallet refuses it)"));
    assert_false(has_warning(r, "teamIdentifier"));
    cm_pkpass_report_free(r);
}

static void zip_of(const cm_file_t *files, size_t n, unsigned char **zip, size_t *len)
{
    char err[256];
    assert_int_equal(cm_bundle_zip(files, n, 1700000000, zip, len, err, sizeof(err)), 0);
}

static void unsafe_names(void **state)
{
    cm_file_t files[] = {TEXT("pass.json", pass_json), TEXT("../evil.png", "x"), TEXT("/abs.png", "x"),
                         TEXT("a//b.png", "x"),        TEXT("dir\\x.png", "x"),  TEXT("./x.png", "x"),
                         TEXT("sp ace.png", "x")};
    unsigned char *zip;
    size_t len;
    zip_of(files, 7, &zip, &len);
    cm_pkpass_report_t *r = inspect_bytes(zip, len, NULL);
    const char *tail =
        "\" is unsafe (printable ASCII without spaces or '\\', relative, no empty, \".\" or \"..\" part)";
    char p[6][200];
    const char *names[] = {"../evil.png", "/abs.png", "a//b.png", "dir\\x.png", "./x.png", "sp ace.png"};
    for (int i = 0; i < 6; i++)
        snprintf(p[i], sizeof(p[i]), "the entry name \"%s%s", names[i], tail);
    expect(r, CM_PKPASS_MALFORMED, p[0], p[1], p[2], p[3], p[4], p[5], NULL);
    assert_true(json_is_null(at(r, "manifest")));
    cm_pkpass_report_free(r);
    free(zip);
}

static void repeated_names(void **state)
{
    cm_file_t files[] = {TEXT("pass.json", pass_json), TEXT("icon.png", "a"), TEXT("ICON.png", "b"),
                         TEXT("logo.png", "d"), TEXT("logo.png/x", "e")};
    unsigned char *zip;
    size_t len;
    zip_of(files, 5, &zip, &len);
    cm_pkpass_report_t *r = inspect_bytes(zip, len, NULL);
    expect(r, CM_PKPASS_MALFORMED, "the entries \"icon.png\" and \"ICON.png\" differ only in case",
           "\"logo.png\" is both a file and a folder", NULL);
    cm_pkpass_report_free(r);
    /* libzip refuses to write a name twice: rename ICON.png to icon.png in the bytes (local and central
     * headers alike). */
    for (size_t i = 0; i + 8 <= len; i++)
        if (memcmp(zip + i, "ICON.png", 8) == 0)
            memcpy(zip + i, "icon", 4);
    r = inspect_bytes(zip, len, NULL);
    expect(r, CM_PKPASS_MALFORMED, "an entry name appears twice in the archive", NULL);
    cm_pkpass_report_free(r);
    free(zip);
}

static void caps_on_size_and_entries(void **state)
{
    size_t big = 32u << 20; /* 32 MiB of zeros deflate to about 32 KiB: a small zip bomb */
    char *zeros = calloc(1, big);
    /* not a .png: the zip stores images as they are, and this one must be deflated */
    cm_file_t files[] = {TEXT("pass.json", pass_json), FILE_OF("strip.bin", zeros, big)};
    unsigned char *zip;
    size_t len;
    zip_of(files, 2, &zip, &len);
    assert_true(len < (1u << 20));
    cm_pkpass_report_t *r = inspect_bytes(zip, len, NULL);
    char p[128];
    snprintf(p, sizeof(p), "the archive holds more than %u bytes once decompressed", CM_PKPASS_MAX_BYTES);
    expect(r, CM_PKPASS_MALFORMED, p, NULL);
    cm_pkpass_report_free(r);
    free(zip);
    free(zeros);

    cm_file_t small[] = {TEXT("pass.json", pass_json), TEXT("a.png", "1"), TEXT("b.png", "2"),
                         TEXT("c.png", "3"), TEXT("d.png", "4")};
    zip_of(small, 5, &zip, &len);
    cm_pkpass_options_t opts = {.max_entries = 4};
    r = inspect_bytes(zip, len, &opts);
    expect(r, CM_PKPASS_MALFORMED, "the archive has 5 entries, more than the 4 allowed", NULL);
    cm_pkpass_report_free(r);
    opts = (cm_pkpass_options_t){.max_bytes = 100};
    r = inspect_bytes(zip, len, &opts);
    expect(r, CM_PKPASS_MALFORMED, "the archive holds more than 100 bytes once decompressed", NULL);
    cm_pkpass_report_free(r);
    free(zip);
}

static void not_an_archive(void **state)
{
    cm_pkpass_report_t *r = inspect_bytes("hello, world", 12, NULL);
    expect(r, CM_PKPASS_MALFORMED, "not a ZIP archive (Not a zip archive)", NULL);
    cm_pkpass_report_free(r);
    r = inspect_bytes(NULL, 0, NULL);
    expect(r, CM_PKPASS_MALFORMED, "not a ZIP archive (no bytes)", NULL);
    cm_pkpass_report_free(r);
    assert_int_equal(cm_pkpass_inspect(NULL, 1, NULL, &r), -1);

    cm_file_t files[] = {TEXT("icon.png", "x")};
    unsigned char *zip;
    size_t len;
    zip_of(files, 1, &zip, &len);
    r = inspect_bytes(zip, len, NULL);
    expect(r, CM_PKPASS_MALFORMED, "the archive has no pass.json", NULL);
    cm_pkpass_report_free(r);
    free(zip);
}

static void damaged_entry(void **state)
{
    const char *payload = "THE-PAYLOAD-THE-PAYLOAD-THE-PAYLOAD";
    cm_file_t files[] = {TEXT("pass.json", pass_json), TEXT("icon.png", payload)};
    unsigned char *zip;
    size_t len;
    char err[256];
    assert_int_equal(cm_bundle_zip_stored(files, 2, 1700000000, 1u << 20, &zip, &len, err, sizeof(err)), 0);
    unsigned char *p = memmem(zip, len, payload, strlen(payload));
    assert_non_null(p);
    p[4] = 'X'; /* the stored bytes no longer have the CRC-32 of the headers */
    cm_pkpass_report_t *r = inspect_bytes(zip, len, NULL);
    expect(r, CM_PKPASS_MALFORMED, "icon.png is damaged in the archive (CRC error)", NULL);
    cm_pkpass_report_free(r);
    free(zip);
}

static void stored_zip_is_read(void **state)
{
    struct spec s = {0};
    default_files(&s);
    size_t len;
    unsigned char *zip = build(&s, &len);
    cm_file_t outer[] = {FILE_OF("1.pkpass", zip, len), FILE_OF("2.pkpass", zip, len)};
    unsigned char *bundle;
    size_t bundle_len;
    char err[256];
    assert_int_equal(
        cm_bundle_zip_stored(outer, 2, 1700000000, 1u << 20, &bundle, &bundle_len, err, sizeof(err)), 0);
    assert_int_equal(
        cm_bundle_zip_stored(outer, 2, 1700000000, 100, &bundle, &bundle_len, err, sizeof(err)) == 0, 0);
    /* The inner archive appears verbatim in the outer one: stored, not deflated. */
    assert_non_null(memmem(bundle, bundle_len, zip, len));
    cm_pkpass_report_t *r = inspect_bytes(bundle, bundle_len, NULL);
    expect_str(r, "entries.0.compression", "store");
    cm_pkpass_report_free(r);
    free(bundle);
    free(zip);
}

static void wwdr_generations(void **state)
{
    char gen[16];
    assert_int_equal(cm_pkpass_wwdr_generation(wwdr, gen, sizeof(gen)), 0);
    assert_string_equal(gen, "G4");
    assert_int_equal(cm_pkpass_wwdr_generation(root, gen, sizeof(gen)), -1);
    assert_int_equal(cm_pkpass_wwdr_generation(pass_cert, gen, sizeof(gen)), -1);
    const uint64_t serials[] = {0x19, 0x01DEBCC4396DA010ull, 0x42};
    const char *names[] = {"2008", "2013", "G1"};
    for (int i = 0; i < 3; i++) {
        X509 *g1 = make_cert(wwdr_key, root, root_key, 1, serials[i], -DAY, DAY, "C", "US", "O", "Apple Inc.",
                             "OU", "Apple Worldwide Developer Relations", "CN",
                             "Apple Worldwide Developer Relations Certification Authority", NULL);
        assert_int_equal(cm_pkpass_wwdr_generation(g1, gen, sizeof(gen)), 0);
        assert_string_equal(gen, names[i]);
        X509_free(g1);
    }
}

/* ---- pass.strings ---------------------------------------------------------------------------------- */

static json_t *strings_ok(const void *data, size_t len, const char *encoding)
{
    json_t *out = NULL;
    const char *enc = NULL;
    char err[256] = "";
    int rc = cm_pkpass_strings_parse(data, len, &out, &enc, err, sizeof(err));
    if (rc != 0)
        print_error("unexpected error: %s\n", err);
    assert_int_equal(rc, 0);
    assert_string_equal(enc, encoding);
    return out;
}

static void strings_error(const void *data, size_t len, const char *expected)
{
    json_t *out = NULL;
    const char *enc = NULL;
    char err[256] = "";
    assert_int_equal(cm_pkpass_strings_parse(data, len, &out, &enc, err, sizeof(err)), -1);
    assert_null(out);
    assert_string_equal(err, expected);
}

/* UTF-16 of an ASCII/Latin-1 text plus one astral character (U+1F39F, a ticket) at '@'. */
static size_t utf16(const char *s, int big, unsigned char *out)
{
    size_t n = 0;
    out[n++] = big ? 0xfe : 0xff;
    out[n++] = big ? 0xff : 0xfe;
    for (; *s; s++) {
        uint16_t units[2] = {(uint8_t)*s, 0};
        int count = 1;
        if (*s == '@')
            units[0] = 0xd83c, units[1] = 0xdf9f, count = 2;
        for (int k = 0; k < count; k++) {
            out[n++] = big ? units[k] >> 8 : units[k] & 0xff;
            out[n++] = big ? units[k] & 0xff : units[k] >> 8;
        }
    }
    return n;
}

static void strings_encodings(void **state)
{
    const char *text = "/* header */\n\"EVENT\" = \"Event @\";\n// line comment\n\"gate\"=\"Gate\";";
    unsigned char buf[512];
    for (int big = 0; big <= 1; big++) {
        size_t n = utf16(text, big, buf);
        json_t *o = strings_ok(buf, n, big ? "utf-16be" : "utf-16le");
        assert_string_equal(json_string_value(json_object_get(o, "EVENT")), "Event \xf0\x9f\x8e\x9f");
        assert_string_equal(json_string_value(json_object_get(o, "gate")), "Gate");
        assert_int_equal(json_object_size(o), 2);
        json_decref(o);
    }
    const char utf8[] = "\xef\xbb\xbf\"k\" = \"gr\xc3\xbc\xc3\x9f\";";
    json_t *o = strings_ok(utf8, strlen(utf8), "utf-8");
    assert_string_equal(json_string_value(json_object_get(o, "k")), "gr\xc3\xbc\xc3\x9f");
    json_decref(o);
    const char escapes[] = "\"a\" = \"line\\none \\\"q\\\" \\\\ \\U00e4\";\nword = other.word;\n\"short\";\n";
    o = strings_ok(escapes, strlen(escapes), "utf-8");
    assert_string_equal(json_string_value(json_object_get(o, "a")), "line\none \"q\" \\ \xc3\xa4");
    assert_string_equal(json_string_value(json_object_get(o, "word")), "other.word");
    assert_string_equal(json_string_value(json_object_get(o, "short")), "short");
    json_decref(o);
    o = strings_ok("", 0, "utf-8");
    assert_int_equal(json_object_size(o), 0);
    json_decref(o);
}

static void strings_errors(void **state)
{
    const char missing[] = "\"a\" = \"1\";\n\"b\" = \"2\"\n\"c\" = \"3\";";
    strings_error(missing, strlen(missing), "expected ';' after the entry \"b\" at line 3");
    const char twice[] = "\"a\" = \"1\";\n\n\"a\" = \"2\";";
    strings_error(twice, strlen(twice), "the key \"a\" appears twice (again at line 3)");
    const char open[] = "\"a\" = \"1\";\n\"b\" = \"2;";
    strings_error(open, strlen(open), "unterminated string starting at line 2");
    const char comment[] = "\"a\" = \"1\"; /* no end";
    strings_error(comment, strlen(comment), "unterminated comment at line 1");
    const char latin1[] = "\"a\" = \"\xe4\";";
    strings_error(latin1, strlen(latin1),
                  "neither UTF-8 nor UTF-16 with a byte order mark (FF FE or FE FF): byte 0xe4 at line 1");
    const unsigned char odd[] = {0xfe, 0xff, 0, '"', 0};
    strings_error(odd, sizeof(odd), "UTF-16 text with an odd number of bytes (5)");
    const unsigned char lone[] = {0xfe, 0xff, 0, '"', 0xdc, 0x00};
    strings_error(lone, sizeof(lone), "invalid UTF-16 (lone surrogate U+DC00) at line 1");
    const char escape[] = "\"a\" = \"\\x41\";";
    strings_error(escape, strlen(escape), "unknown escape \\x at line 1");
    const char bad_u[] = "\"a\" = \"\\Ud800\";";
    strings_error(bad_u, strlen(bad_u),
                  "bad \\U escape (4 hex digits, surrogates in pairs, not U+0000) at line 1");
    const char no_value[] = "\"a\" = ;";
    strings_error(no_value, strlen(no_value), "expected a value (a quoted string) at line 1, found ';'");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(valid_bundle),
        cmocka_unit_test(tampered_file),
        cmocka_unit_test(missing_file),
        cmocka_unit_test(extra_file_and_ignorable_entries),
        cmocka_unit_test(manifest_lists_signature_and_itself),
        cmocka_unit_test(sha256_manifest_is_accepted),
        cmocka_unit_test(signature_over_other_content),
        cmocka_unit_test(unsigned_bundle),
        cmocka_unit_test(wrong_or_no_intermediate),
        cmocka_unit_test(untrusted_chain),
        cmocka_unit_test(expired_signer),
        cmocka_unit_test(identity_and_pass_json_warnings),
        cmocka_unit_test(unsafe_names),
        cmocka_unit_test(repeated_names),
        cmocka_unit_test(caps_on_size_and_entries),
        cmocka_unit_test(not_an_archive),
        cmocka_unit_test(damaged_entry),
        cmocka_unit_test(stored_zip_is_read),
        cmocka_unit_test(wwdr_generations),
        cmocka_unit_test(strings_encodings),
        cmocka_unit_test(strings_errors),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
