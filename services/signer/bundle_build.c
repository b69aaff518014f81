/*
 * One .pkpass from a pass record and its template: pass.json, manifest.json, signature, zip.
 *
 * pass.json is the stored doc with the keys the server owns written over whatever the doc says, so an
 * issuer can never point a pass at another web service, team or token. Every input that shapes the
 * bytes (doc, template files in name order, lastModified as the entries' mtime) is fixed by the pass
 * version and template revision, so two builds differ only in the signature's signingTime.
 *
 * The pass's own files (per-pass images) replace the template's files of the same name; the rest of
 * the template follows, then the pass's own files, each group in name order.
 */
#include "signer.h"

#include "common/bundle_zip.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PASS_JSON "pass.json"

/* The doc with the server's keys set. Returns the JSON text (free with free()) or NULL with err. */
static char *build_pass_json(const signer_bundle_input_t *in, char *err, size_t err_size)
{
    char *text = NULL;
    json_error_t jerr;
    json_t *doc = json_loadb(in->doc, in->doc_len, JSON_REJECT_DUPLICATES, &jerr);
    if (doc == NULL) {
        snprintf(err, err_size, "stored doc of pass %s %s is not JSON: %s (line %d)", in->pass_type_id,
                 in->serial, jerr.text, jerr.line);
        return NULL;
    }
    if (!json_is_object(doc)) {
        snprintf(err, err_size, "stored doc of pass %s %s is not a JSON object", in->pass_type_id,
                 in->serial);
        goto out;
    }
    if (json_object_set_new(doc, "passTypeIdentifier", json_string(in->pass_type_id)) != 0 ||
        json_object_set_new(doc, "serialNumber", json_string(in->serial)) != 0 ||
        json_object_set_new(doc, "teamIdentifier", json_string(in->identity->team_id)) != 0 ||
        json_object_set_new(doc, "webServiceURL", json_string(in->public_url)) != 0 ||
        json_object_set_new(doc, "authenticationToken", json_string(in->auth_token)) != 0) {
        snprintf(err, err_size, "pass %s %s: a server-owned value is not UTF-8", in->pass_type_id,
                 in->serial);
        goto out;
    }
    text = json_dumps(doc, JSON_COMPACT);
    if (text == NULL)
        abort();
out:
    json_decref(doc);
    return text;
}

/* 1 when the pass has a file of its own by that name. */
static int is_own(const signer_bundle_input_t *in, const char *name)
{
    for (size_t i = 0; i < in->own_file_count; i++)
        if (strcmp(in->own_files[i].name, name) == 0)
            return 1;
    return 0;
}

int signer_bundle_build(const signer_bundle_input_t *in, unsigned char **out, size_t *out_len, char *err,
                        size_t err_size)
{
    int rc = SIGNER_ERR_DATA;
    char *pass_json = NULL, *manifest = NULL;
    unsigned char *signature = NULL;
    size_t manifest_len = 0, signature_len = 0;
    /* pass.json + the template's files + the pass's own + manifest.json + signature */
    cm_file_t *files = calloc(in->file_count + in->own_file_count + 3, sizeof(*files));
    if (files == NULL)
        abort();
    size_t n = 0;

    pass_json = build_pass_json(in, err, err_size);
    if (pass_json == NULL)
        goto out;
    files[n++] =
        (cm_file_t){.name = PASS_JSON, .data = (const unsigned char *)pass_json, .len = strlen(pass_json)};
    for (size_t i = 0; i < in->file_count; i++) {
        const cm_file_t *f = &in->files[i];
        if (strcmp(f->name, PASS_JSON) == 0 || cm_manifest_is_reserved(f->name) || is_own(in, f->name))
            continue;
        if (!cm_bundle_name_is_safe(f->name)) {
            snprintf(err, err_size, "template file name '%.80s' is not a safe bundle path", f->name);
            goto out;
        }
        files[n++] = *f;
    }
    for (size_t i = 0; i < in->own_file_count; i++) {
        const cm_file_t *f = &in->own_files[i];
        if (strcmp(f->name, PASS_JSON) == 0 || cm_manifest_is_reserved(f->name) ||
            !cm_bundle_name_is_safe(f->name)) {
            snprintf(err, err_size, "pass file name '%.80s' is not allowed in a bundle", f->name);
            goto out;
        }
        files[n++] = *f;
    }
    if (cm_manifest_build(files, n, &manifest, &manifest_len) != 0) {
        snprintf(err, err_size, "manifest: duplicate or invalid file names in the template");
        goto out;
    }
    rc = signer_cms_sign(in->identity, in->wwdr, manifest, manifest_len, &signature, &signature_len, err,
                         err_size);
    if (rc != 0)
        goto out;
    files[n++] =
        (cm_file_t){.name = CM_MANIFEST_NAME, .data = (const unsigned char *)manifest, .len = manifest_len};
    files[n++] = (cm_file_t){.name = CM_SIGNATURE_NAME, .data = signature, .len = signature_len};
    if (cm_bundle_zip(files, n, in->last_modified, out, out_len, err, err_size) != 0) {
        rc = SIGNER_ERR_INTERNAL;
        goto out;
    }
    rc = 0;
out:
    free(signature);
    free(manifest);
    free(pass_json);
    free(files);
    return rc;
}
