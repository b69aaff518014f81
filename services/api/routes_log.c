/*
 * POST /v1/log with {"logs": ["...", ...]}: Wallet's error reports. 200 when stored; 400 for a body
 * that is not that shape or has no line. Each line is logged (truncated) and kept in pk:logs, capped
 * at LOG_KEEP lines.
 */
#include "app.h"
#include "common/log.h"
#include "common/path.h"
#include "request.h"
#include "scripts.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <string.h>

#define LOG_KEEP       "1000"
#define MAX_LINES      100
#define MAX_LINE_BYTES 4096

static void log_line(const char *text, size_t len)
{
    char clean[301];
    CM_LOG(CM_LOG_INFO, "event=device_log line=\"%s\"", cm_log_clean(clean, sizeof(clean), text, len));
}

static void on_stored(redisReply *reply, void *data)
{
    api_op_t *op = data;
    h2o_req_t *req = api_op_req_or_reply(op, reply, REDIS_REPLY_INTEGER, -1);
    if (req == NULL)
        goto out;
    cm_httpd_send_empty(req, 200);
out:
    api_op_free(op);
}

static int on_log(void *data, h2o_req_t *req)
{
    api_app_t *app = data;
    cm_path_t path;
    size_t v1;
    if (api_v1_path_or_reply(app, req, &path, &v1) != 0)
        return 0;
    if (path.count != v1 + 2)
        return -1; /* /v1/log/anything is not the log endpoint */
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST")))
        return api_method_not_allowed(req, "POST");
    json_error_t jerr;
    json_t *body = json_loadb(req->entity.base != NULL ? req->entity.base : "", req->entity.len, 0, &jerr);
    json_t *logs = json_object_get(body, "logs");
    size_t n = json_array_size(logs);
    if (body == NULL) {
        cm_httpd_send_error(req, 400, "body is not valid JSON: %s at line %d, column %d", jerr.text,
                            jerr.line, jerr.column);
        return 0;
    }
    if (!json_is_array(logs) || n == 0 || n > MAX_LINES) {
        cm_httpd_send_error(req, 400, "body must be {\"logs\": [\"...\"]} with 1 to %d lines", MAX_LINES);
        json_decref(body);
        return 0;
    }
    const char *args[MAX_LINES + 1];
    size_t lens[MAX_LINES + 1];
    args[0] = LOG_KEEP;
    lens[0] = strlen(LOG_KEEP);
    for (size_t i = 0; i < n; i++) {
        json_t *line = json_array_get(logs, i);
        if (!json_is_string(line)) {
            cm_httpd_send_error(req, 400, "logs[%zu] is not a string", i);
            json_decref(body);
            return 0;
        }
        args[i + 1] = json_string_value(line);
        lens[i + 1] = json_string_length(line) > MAX_LINE_BYTES ? MAX_LINE_BYTES : json_string_length(line);
        log_line(args[i + 1], lens[i + 1]);
    }
    api_op_t *op = api_op_new(app, req);
    op->body = body; /* keeps the strings alive until hiredis has copied them (it does so at once) */
    api_op_eval(op, API_SCRIPT_APPEND_LOGS, (int)n + 1, args, lens, on_stored);
    return 0;
}

void api_routes_log_register(api_app_t *app)
{
    api_route_v1(app, "/log", on_log);
}
