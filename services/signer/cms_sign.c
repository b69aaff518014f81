/*
 * The bundle's "signature" file: a detached CMS SignedData over manifest.json (OpenSSL CMS).
 *
 * CMS_BINARY keeps the manifest bytes as they are (no MIME canonicalisation of line ends); CMS_DETACHED
 * leaves the content out, as Wallet expects. The signed attributes are contentType, messageDigest and
 * signingTime, the three Apple's own sample passes carry (CMS_NOSMIMECAP leaves out the
 * SMIMECapabilities list OpenSSL adds by default: nobody reads it, and building it was a tenth of the
 * CMS work). signingTime is checked because Apple requires it and a later OpenSSL default change must
 * not drop it silently. The digest is SHA-256, given explicitly (CMS_PARTIAL, then CMS_add1_signer)
 * so OpenSSL does not look up the key's default digest for every signature.
 */
#include "signer.h"

#include <openssl/cms.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void openssl_reason(const char *what, char *err, size_t err_size)
{
    char reason[200];
    unsigned long e = ERR_get_error();
    if (e != 0)
        ERR_error_string_n(e, reason, sizeof(reason));
    else
        snprintf(reason, sizeof(reason), "unknown error");
    snprintf(err, err_size, "%s: %s", what, reason);
    ERR_clear_error();
}

int signer_cms_sign(const cm_pass_identity_t *identity, struct x509_st *wwdr, const void *data, size_t len,
                    unsigned char **out, size_t *out_len, char *err, size_t err_size)
{
    int rc = SIGNER_ERR_INTERNAL;
    CMS_ContentInfo *cms = NULL;
    BIO *der = NULL;
    if (len > INT32_MAX) {
        snprintf(err, err_size, "manifest too large to sign");
        return SIGNER_ERR_INTERNAL;
    }
    STACK_OF(X509) *extra = sk_X509_new_null();
    BIO *in = BIO_new_mem_buf(data, (int)len);
    if (extra == NULL || in == NULL)
        abort();
    if (wwdr != NULL && sk_X509_push(extra, wwdr) <= 0)
        abort();
    const unsigned flags = CMS_DETACHED | CMS_BINARY | CMS_NOSMIMECAP;
    cms = CMS_sign(NULL, NULL, extra, NULL, flags | CMS_PARTIAL);
    if (cms == NULL) {
        openssl_reason("CMS_sign", err, err_size);
        goto out;
    }
    if (CMS_add1_signer(cms, identity->cert, identity->key, EVP_sha256(), flags) == NULL) {
        openssl_reason("CMS_add1_signer", err, err_size);
        goto out;
    }
    if (CMS_final(cms, in, NULL, flags) != 1) {
        openssl_reason("CMS_final", err, err_size);
        goto out;
    }
    STACK_OF(CMS_SignerInfo) *infos = CMS_get0_SignerInfos(cms);
    if (sk_CMS_SignerInfo_num(infos) != 1 ||
        CMS_signed_get_attr_by_NID(sk_CMS_SignerInfo_value(infos, 0), NID_pkcs9_signingTime, -1) < 0) {
        snprintf(err, err_size, "CMS_sign produced no signingTime attribute");
        goto out;
    }
    der = BIO_new(BIO_s_mem());
    if (der == NULL)
        abort();
    if (i2d_CMS_bio(der, cms) != 1) {
        openssl_reason("i2d_CMS_bio", err, err_size);
        goto out;
    }
    char *p = NULL;
    long n = BIO_get_mem_data(der, &p);
    if (n <= 0) {
        snprintf(err, err_size, "i2d_CMS_bio wrote nothing");
        goto out;
    }
    unsigned char *copy = malloc((size_t)n);
    if (copy == NULL)
        abort();
    memcpy(copy, p, (size_t)n);
    *out = copy;
    *out_len = (size_t)n;
    rc = 0;
out:
    BIO_free(der);
    CMS_ContentInfo_free(cms);
    BIO_free(in);
    sk_X509_free(extra); /* the certificates are borrowed; CMS_sign took its own references */
    return rc;
}
