/*
 * What one bundle request does on a worker thread (blocking calls are fine here, never on the loop).
 *
 * Order: the pass (404 when absent), the certificate, the template's revision, then the cache entry
 * pk:bundle:{ptid}:{serial}, a hit when its id is {version}:{templateRev}:{signing tag}. A hit answers
 * without reading the template files or signing. (The pass's own files, pk:passfile, need no part of
 * the id: writing one gives the pass a new version.) On a miss the whole template is read in one HGETALL,
 * then the pass's own files in another; the template's
 * "@rev" comes with the files, so when the template changed since the first read the bundle is cached under
 * the revision it was really built from. A failed cache write is logged and the bundle is served anyway.
 */
#include "signer.h"

#include "common/keys.h"
#include "common/log.h"

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void signer_fetch_result_dispose(signer_fetch_result_t *res)
{
    free(res->bundle);
    res->bundle = NULL;
}

/* A pass whose template vanished is a data problem (500 naming it), not an unknown pass (404). */
static int template_gone_is_data_error(int rc, const signer_pass_record_t *pass, const char *ptid,
                                       const char *serial, signer_fetch_result_t *res)
{
    if (rc != SIGNER_ERR_NOT_FOUND)
        return rc;
    snprintf(res->err, sizeof(res->err), "template %s of pass %s %s is gone", pass->template_id, ptid,
             serial);
    return SIGNER_ERR_DATA;
}

/* A digest of what the bundle's signature and server-owned keys depend on besides the pass and the
 * template: the signing certificate, the WWDR and PUBLIC_URL (16 hex digits). A renewed certificate or a
 * changed URL thus never hits an older cache entry. */
static void signing_tag(const signer_app_t *app, const cm_pass_identity_t *identity, char out[17])
{
    unsigned char cert_md[EVP_MAX_MD_SIZE], wwdr_md[EVP_MAX_MD_SIZE], md[EVP_MAX_MD_SIZE];
    unsigned int cert_len = 0, wwdr_len = 0, len = 0;
    X509 *wwdr = cm_certs_wwdr(app->certs);
    X509_digest(identity->cert, EVP_sha256(), cert_md, &cert_len);
    if (wwdr != NULL)
        X509_digest(wwdr, EVP_sha256(), wwdr_md, &wwdr_len);
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx == NULL)
        abort();
    EVP_DigestInit_ex(ctx, EVP_sha256(), NULL);
    EVP_DigestUpdate(ctx, cert_md, cert_len);
    EVP_DigestUpdate(ctx, wwdr_md, wwdr_len);
    EVP_DigestUpdate(ctx, app->public_url, strlen(app->public_url));
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    for (int i = 0; i < 8; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

void signer_bundle_fetch(const signer_app_t *app, const char *ptid, const char *serial,
                         signer_fetch_result_t *res)
{
    signer_pass_record_t pass;
    signer_template_t tpl, own;
    char rev[24], key[CM_KEY_MAX], id[96], tag[17];
    memset(res, 0, sizeof(*res));
    memset(&pass, 0, sizeof(pass));
    memset(&tpl, 0, sizeof(tpl));
    memset(&own, 0, sizeof(own));
    signer_store_t *store = signer_store_for_thread(&app->redis);
    int rc = signer_store_read_pass(store, ptid, serial, &pass, res->err, sizeof(res->err));
    if (rc != 0)
        goto out;
    snprintf(res->version, sizeof(res->version), "%s", pass.version);
    res->last_modified = (time_t)pass.last_modified;

    const cm_pass_identity_t *identity = cm_certs_find(app->certs, ptid);
    if (identity == NULL) {
        snprintf(res->err, sizeof(res->err), "no certificate loaded for pass type %s", ptid);
        rc = SIGNER_ERR_NO_CERT;
        goto out;
    }
    rc = signer_store_template_rev(store, pass.template_id, rev, sizeof(rev), res->err, sizeof(res->err));
    rc = template_gone_is_data_error(rc, &pass, ptid, serial, res);
    if (rc != 0)
        goto out;
    signing_tag(app, identity, tag);
    snprintf(key, sizeof(key), CM_KEY_BUNDLE_FMT, ptid, serial);
    if (app->cache_ttl > 0) {
        snprintf(id, sizeof(id), "%s:%s:%s", pass.version, rev, tag);
        rc = signer_store_get_bundle(store, key, id, &res->bundle, &res->bundle_len, res->err,
                                     sizeof(res->err));
        if (rc == 0) {
            res->cache_hit = 1;
            goto out;
        }
        if (rc != SIGNER_ERR_NOT_FOUND)
            goto out;
    }

    rc = signer_store_read_template(store, pass.template_id, &tpl, res->err, sizeof(res->err));
    rc = template_gone_is_data_error(rc, &pass, ptid, serial, res);
    if (rc != 0)
        goto out;
    rc = signer_store_read_pass_files(store, ptid, serial, &own, res->err, sizeof(res->err));
    if (rc != 0)
        goto out;
    signer_bundle_input_t in = {
        .pass_type_id = ptid,
        .serial = serial,
        .doc = pass.doc,
        .doc_len = pass.doc_len,
        .auth_token = pass.auth_token,
        .public_url = app->public_url,
        .last_modified = res->last_modified,
        .files = tpl.files,
        .file_count = tpl.count,
        .own_files = own.files,
        .own_file_count = own.count,
        .identity = identity,
        .wwdr = cm_certs_wwdr(app->certs),
    };
    rc = signer_bundle_build(&in, &res->bundle, &res->bundle_len, res->err, sizeof(res->err));
    if (rc != 0)
        goto out;
    if (app->cache_ttl > 0) {
        char put_err[256];
        snprintf(id, sizeof(id), "%s:%s:%s", pass.version, tpl.rev, tag);
        if (signer_store_put_bundle(store, key, id, res->bundle, res->bundle_len, app->cache_ttl, put_err,
                                    sizeof(put_err)) != 0)
            CM_LOG(CM_LOG_WARN, "event=bundle_cache_write_failed ptid=%s serial=%s reason=\"%s\"", ptid,
                   serial, put_err);
    }
out:
    res->rc = rc;
    if (rc != 0)
        signer_fetch_result_dispose(res);
    signer_template_dispose(&own);
    signer_template_dispose(&tpl);
    signer_pass_record_dispose(&pass);
}
