/*
 * manifest.json builder; see common/manifest.h. SHA-1 comes from OpenSSL's EVP interface (skipped for
 * files whose digest the caller already has), the JSON from jansson with JSON_SORT_KEYS, which is what
 * makes the output independent of the file order.
 */
#include "common/manifest.h"

#include <jansson.h>
#include <openssl/evp.h>
#include <stdlib.h>
#include <string.h>

int cm_manifest_is_reserved(const char *name)
{
    return strcmp(name, CM_MANIFEST_NAME) == 0 || strcmp(name, CM_SIGNATURE_NAME) == 0;
}

int cm_manifest_sha1_hex(const unsigned char *data, size_t len, char hex[41])
{
    static const char digits[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int md_len = 0;
    if (EVP_Digest(data, len, md, &md_len, EVP_sha1(), NULL) != 1 || md_len != 20)
        return -1;
    for (unsigned int i = 0; i < md_len; i++) {
        hex[2 * i] = digits[md[i] >> 4];
        hex[2 * i + 1] = digits[md[i] & 0x0f];
    }
    hex[40] = '\0';
    return 0;
}

int cm_manifest_build(const cm_file_t *files, size_t count, char **out, size_t *out_len)
{
    int rc = -1;
    char *text = NULL;
    json_t *obj = json_object();
    if (obj == NULL)
        abort();
    for (size_t i = 0; i < count; i++) {
        const cm_file_t *f = &files[i];
        char hex[41];
        if (f->name == NULL || f->name[0] == '\0' || json_object_get(obj, f->name) != NULL)
            goto out;
        if (cm_manifest_is_reserved(f->name))
            continue;
        const char *digest = f->sha1_hex;
        if (digest == NULL) {
            if (cm_manifest_sha1_hex(f->data, f->len, hex) != 0)
                goto out;
            digest = hex;
        }
        if (json_object_set_new(obj, f->name, json_string(digest)) != 0)
            goto out; /* not UTF-8 */
    }
    text = json_dumps(obj, JSON_COMPACT | JSON_SORT_KEYS);
    if (text == NULL)
        abort();
    *out_len = strlen(text);
    *out = text;
    rc = 0;
out:
    json_decref(obj);
    return rc;
}
