/*
 * Request validation as APNs does it, and the --rule table.
 *
 * Validation is a pure function of the request: the first failing check decides the answer,
 * in the order of the table in README.md (method, path, token, duplicate headers, certificate,
 * topic, push type, priority, apns-id, expiration, collapse id, payload). Only a request that
 * passes everything is matched against the --rule table, and only that match has state: a
 * counted rule ("*N") gives N answers and is then used up.
 */
#include "standin.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <strings.h>

#define DEVICE_PREFIX "/3/device/"

/* apns-push-type values Apple documents. */
static const char *const push_types[] = {
    "alert", "background",   "location",   "voip",    "complication", "fileprovider",
    "mdm",   "liveactivity", "pushtotalk", "widgets", "controls",
};

static int bytes_eq(const char *a, size_t a_len, const char *lit)
{
    size_t n = strlen(lit);
    return a_len == n && memcmp(a, lit, n) == 0;
}

static int is_hex_digit(char c)
{
    static const unsigned char hex[256] = {
        ['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1, ['5'] = 1, ['6'] = 1, ['7'] = 1,
        ['8'] = 1, ['9'] = 1, ['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
        ['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
    };
    return hex[(unsigned char)c];
}

static int is_hex_token(const char *s, size_t len)
{
    if (len == 0 || len % 2 != 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (!is_hex_digit(s[i]))
            return 0;
    }
    return 1;
}

int standin_is_uuid(const char *s, size_t len)
{
    if (len != 36)
        return 0;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (c != '-')
                return 0;
        } else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) {
            return 0;
        }
    }
    return 1;
}

int standin_path_token(const char *path, size_t path_len, const char **token, size_t *token_len)
{
    size_t plen = strlen(DEVICE_PREFIX);
    if (path == NULL || path_len < plen || memcmp(path, DEVICE_PREFIX, plen) != 0)
        return 0;
    *token = path + plen;
    *token_len = path_len - plen;
    return 1;
}

/* The first header named name, or NULL; *count gets how many there are. */
static const standin_header_t *find_header(const standin_request_t *req, const char *name, size_t *count)
{
    const standin_header_t *first = NULL;
    size_t n = 0;
    for (size_t i = 0; i < req->n_headers; i++) {
        if (bytes_eq(req->headers[i].name, req->headers[i].name_len, name)) {
            if (first == NULL)
                first = &req->headers[i];
            n++;
        }
    }
    if (count != NULL)
        *count = n;
    return first;
}

/* RFC 9113 lets a client split "cookie" into several fields; any other repeat is an error. */
static int has_duplicate_header(const standin_request_t *req)
{
    for (size_t i = 0; i < req->n_headers; i++) {
        const standin_header_t *h = &req->headers[i];
        if (bytes_eq(h->name, h->name_len, "cookie"))
            continue;
        for (size_t j = i + 1; j < req->n_headers; j++) {
            const standin_header_t *o = &req->headers[j];
            if (o->name_len == h->name_len && memcmp(o->name, h->name, h->name_len) == 0)
                return 1;
        }
    }
    return 0;
}

static int is_push_type(const standin_header_t *h)
{
    for (size_t i = 0; i < sizeof(push_types) / sizeof(push_types[0]); i++) {
        if (bytes_eq(h->value, h->value_len, push_types[i]))
            return 1;
    }
    return 0;
}

static int is_unix_seconds(const char *s, size_t len)
{
    if (len == 0 || len > 19)
        return 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return 0;
    }
    return 1;
}

static int is_json_object(const char *body, size_t len)
{
    if (len == 2 && body[0] == '{' && body[1] == '}')
        return 1; /* what Wallet pushes carry: spare the parser */
    json_error_t jerr;
    json_t *doc = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
    int ok = doc != NULL && json_is_object(doc);
    json_decref(doc);
    return ok;
}

/* Sets *out and returns 1, so that a failed check reads "return fail(...)". */
static int fail(standin_verdict_t *out, int status, const char *reason)
{
    size_t n = strlen(reason);
    if (n > STANDIN_MAX_REASON)
        n = STANDIN_MAX_REASON;
    out->status = status;
    memcpy(out->reason, reason, n);
    out->reason[n] = '\0';
    return 1;
}

/* The token's first counted rule with answers left (used up by one), else its last permanent
 * rule, else NULL. */
static standin_rule_t *take_rule(standin_rules_t *rules, const char *token, size_t token_len)
{
    standin_rule_t *permanent = NULL;
    for (size_t i = 0; i < rules->n; i++) {
        standin_rule_t *r = &rules->items[i];
        if (r->token_len != token_len || strncasecmp(r->token, token, token_len) != 0)
            continue;
        if (r->count == 0) {
            permanent = r; /* keep going: a counted rule goes first, the last permanent one wins */
        } else if (r->left > 0) {
            r->left--;
            return r;
        }
    }
    return permanent;
}

/* Apple's checks. Returns 1 with *out set when one fails, 0 when the request is valid. */
static int validate(const standin_request_t *req, standin_verdict_t *out)
{
    const char *token = NULL;
    size_t token_len = 0;

    if (req->method == NULL || !bytes_eq(req->method, req->method_len, "POST"))
        return fail(out, 405, "MethodNotAllowed");
    if (!standin_path_token(req->path, req->path_len, &token, &token_len))
        return fail(out, 404, "BadPath");
    if (token_len == 0)
        return fail(out, 400, "MissingDeviceToken");
    if (!is_hex_token(token, token_len))
        return fail(out, 400, "BadDeviceToken");
    if (has_duplicate_header(req))
        return fail(out, 400, "DuplicateHeaders");

    /* Certificate authentication: the certificate's UID is the one topic it may push to. A
     * certificate without a UID cannot be a push certificate at all. */
    if (req->client_uid == NULL)
        return fail(out, 403, "BadCertificate");
    const standin_header_t *topic = find_header(req, "apns-topic", NULL);
    if (topic == NULL || topic->value_len == 0)
        return fail(out, 400, "MissingTopic");
    if (!bytes_eq(topic->value, topic->value_len, req->client_uid))
        return fail(out, 400, "TopicDisallowed");

    const standin_header_t *push_type = find_header(req, "apns-push-type", NULL);
    if (push_type != NULL && !is_push_type(push_type))
        return fail(out, 400, "InvalidPushType");
    const standin_header_t *prio = find_header(req, "apns-priority", NULL);
    if (prio != NULL && !bytes_eq(prio->value, prio->value_len, "1") &&
        !bytes_eq(prio->value, prio->value_len, "5") && !bytes_eq(prio->value, prio->value_len, "10"))
        return fail(out, 400, "BadPriority");
    /* "background" with an explicit 10 is Apple's documented error. An omitted priority is
     * accepted: see README.md. */
    if (push_type != NULL && prio != NULL && bytes_eq(push_type->value, push_type->value_len, "background") &&
        bytes_eq(prio->value, prio->value_len, "10"))
        return fail(out, 400, "BadPriority");
    const standin_header_t *id = find_header(req, "apns-id", NULL);
    if (id != NULL && !standin_is_uuid(id->value, id->value_len))
        return fail(out, 400, "BadMessageId");
    const standin_header_t *exp = find_header(req, "apns-expiration", NULL);
    if (exp != NULL && !is_unix_seconds(exp->value, exp->value_len))
        return fail(out, 400, "BadExpirationDate");
    const standin_header_t *collapse = find_header(req, "apns-collapse-id", NULL);
    if (collapse != NULL && (collapse->value_len == 0 || collapse->value_len > 64))
        return fail(out, 400, "BadCollapseId");

    if (req->body_len == 0)
        return fail(out, 400, "PayloadEmpty");
    if (req->body_len > STANDIN_MAX_PAYLOAD)
        return fail(out, 413, "PayloadTooLarge");
    if (!is_json_object(req->body, req->body_len))
        return fail(out, 400, "BadPayload");

    return 0;
}

void standin_rules_check(const standin_request_t *req, standin_rules_t *rules, standin_verdict_t *out,
                         standin_rule_t **rule)
{
    *rule = NULL;
    if (validate(req, out))
        return;
    const char *token = NULL;
    size_t token_len = 0;
    standin_path_token(req->path, req->path_len, &token, &token_len);
    *rule = rules->n > 0 ? take_rule(rules, token, token_len) : NULL;
    if (*rule != NULL)
        fail(out, (*rule)->status, (*rule)->reason);
    else
        fail(out, 200, "");
}

int standin_rules_add(standin_rules_t *rules, const char *spec, const char **err)
{
    const char *eq = strchr(spec, '=');
    const char *colon = eq != NULL ? strchr(eq + 1, ':') : NULL;
    if (eq == NULL || colon == NULL) {
        *err = "expected TOKEN=STATUS:REASON or TOKEN=STATUS:REASON*N";
        return -1;
    }
    size_t token_len = (size_t)(eq - spec);
    if (!is_hex_token(spec, token_len)) {
        *err = "TOKEN must be a non-empty even-length hex string";
        return -1;
    }
    char digits[8];
    size_t dlen = (size_t)(colon - eq - 1);
    if (dlen != 3) {
        *err = "STATUS must be three digits";
        return -1;
    }
    memcpy(digits, eq + 1, dlen);
    digits[dlen] = '\0';
    char *end = NULL;
    errno = 0;
    long status = strtol(digits, &end, 10);
    if (errno != 0 || *end != '\0' || status < 200 || status > 599) {
        *err = "STATUS must be 200..599";
        return -1;
    }
    const char *reason = colon + 1;
    const char *star = strchr(reason, '*');
    size_t rlen = star != NULL ? (size_t)(star - reason) : strlen(reason);
    long count = 0;
    if (star != NULL) {
        errno = 0;
        end = NULL;
        count = strtol(star + 1, &end, 10);
        if (star[1] < '0' || star[1] > '9' || errno != 0 || *end != '\0' || count < 1 ||
            count > STANDIN_MAX_COUNT) {
            *err = "the count after '*' must be 1..1000000";
            return -1;
        }
    }
    if (rlen > STANDIN_MAX_REASON || (rlen == 0 && status != 200)) {
        *err = "REASON must be 1..63 characters (empty only with 200)";
        return -1;
    }
    for (size_t i = 0; i < rlen; i++) {
        if (!isalnum((unsigned char)reason[i])) {
            *err = "REASON must be letters and digits, like Apple's reasons";
            return -1;
        }
    }
    if (rules->n >= STANDIN_MAX_RULES) {
        *err = "too many rules";
        return -1;
    }
    standin_rule_t *r = &rules->items[rules->n];
    r->token = standin_xcalloc(token_len + 1, 1);
    for (size_t i = 0; i < token_len; i++)
        r->token[i] = (char)tolower((unsigned char)spec[i]);
    r->token_len = token_len;
    r->status = (int)status;
    snprintf(r->reason, sizeof(r->reason), "%.*s", status == 200 ? 0 : (int)rlen, reason);
    r->count = r->left = count;
    rules->n++;
    return 0;
}

void standin_rules_dispose(standin_rules_t *rules)
{
    for (size_t i = 0; i < rules->n; i++) {
        free(rules->items[i].token);
        rules->items[i].token = NULL;
    }
    rules->n = 0;
}
