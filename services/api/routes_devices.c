/*
 * Apple's device endpoints (PassKit web service):
 *   POST   /v1/devices/{dli}/registrations/{ptid}/{serial}   register   201 new, 200 existing, 401
 *   DELETE /v1/devices/{dli}/registrations/{ptid}/{serial}   unregister 200 (also when not registered), 401
 *   GET    /v1/devices/{dli}/registrations/{ptid}[?passesUpdatedSince=tag]  200 SerialNumbers, 204 none
 * Register and unregister check "Authorization: ApplePass <token>" before anything else; the list needs
 * no header (the device library identifier is the secret).
 */
#include "app.h"
#include "common/log.h"
#include "common/path.h"
#include "request.h"
#include "scripts.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void on_registered(redisReply *reply, void *data)
{
    api_op_t *op = data;
    h2o_req_t *req = api_op_req_or_reply(op, reply, REDIS_REPLY_INTEGER, -1);
    if (req == NULL)
        goto out;
    if (reply->integer < 0) {
        cm_httpd_send_error(req, 404, "no pass %s/%s", op->ptid, op->serial);
        goto out;
    }
    CM_LOG(CM_LOG_INFO, "event=registered ptid=%s serial=%s new=%d", op->ptid, op->serial,
           (int)reply->integer);
    cm_httpd_send_empty(req, reply->integer == 1 ? 201 : 200);
out:
    api_op_free(op);
}

static void register_authorized(api_op_t *op, h2o_req_t *req)
{
    json_error_t jerr;
    json_t *body = json_loadb(req->entity.base != NULL ? req->entity.base : "", req->entity.len, 0, &jerr);
    const char *token = json_string_value(json_object_get(body, "pushToken"));
    if (body == NULL) {
        cm_httpd_send_error(req, 400, "body is not JSON: %s (line %d, column %d)", jerr.text, jerr.line,
                            jerr.column);
        goto fail;
    }
    if (token == NULL) {
        cm_httpd_send_error(req, 400, "body must be {\"pushToken\": \"<hex>\"}");
        goto fail;
    }
    if (!cm_id_is_push_token(token, strlen(token))) {
        cm_httpd_send_error(req, 400, "pushToken must be 1 to %d hexadecimal characters", CM_PUSH_TOKEN_MAX);
        goto fail;
    }
    snprintf(op->push_token, sizeof(op->push_token), "%s", token);
    json_decref(body);
    const char *args[] = {op->ptid, op->serial, op->dli, op->push_token};
    api_op_eval(op, API_SCRIPT_REGISTER, 4, args, NULL, on_registered);
    return;
fail:
    json_decref(body);
    api_op_free(op);
}

static void on_unregistered(redisReply *reply, void *data)
{
    api_op_t *op = data;
    h2o_req_t *req = api_op_req_or_reply(op, reply, REDIS_REPLY_INTEGER, -1);
    if (req == NULL)
        goto out;
    CM_LOG(CM_LOG_INFO, "event=unregistered ptid=%s serial=%s removed=%d", op->ptid, op->serial,
           (int)reply->integer);
    cm_httpd_send_empty(req, 200);
out:
    api_op_free(op);
}

static void unregister_authorized(api_op_t *op, h2o_req_t *req)
{
    const char *args[] = {op->ptid, op->serial, op->dli};
    api_op_eval(op, API_SCRIPT_UNREGISTER, 3, args, NULL, on_unregistered);
}

static void on_listed(redisReply *reply, void *data)
{
    api_op_t *op = data;
    h2o_req_t *req = api_op_req_or_reply(op, reply, REDIS_REPLY_ARRAY, -1);
    if (req == NULL)
        goto out;
    if (reply->elements != 2) {
        cm_httpd_send_empty(req, 204);
        goto out;
    }
    json_t *serials = json_array();
    redisReply *list = reply->element[1];
    for (size_t i = 0; i < list->elements; i++)
        json_array_append_new(serials, json_stringn(list->element[i]->str, list->element[i]->len));
    json_t *obj = json_pack("{s:o,s:s}", "serialNumbers", serials, "lastUpdated", reply->element[0]->str);
    cm_httpd_send_json(req, 200, obj);
    json_decref(obj);
out:
    api_op_free(op);
}

/* passesUpdatedSince is our own tag (a decimal version). Anything else (a tag from another server,
 * garbage) lists everything rather than failing: the device then simply refreshes. */
static const char *since_tag(h2o_req_t *req, char *buf, size_t size)
{
    if (cm_path_query_param(req->path.base, req->path.len, "passesUpdatedSince", buf, size) != 0)
        return "0";
    size_t n = strlen(buf);
    if (n == 0 || n > 18 || strspn(buf, "0123456789") != n)
        return "0";
    return buf;
}

static int on_devices(void *data, h2o_req_t *req)
{
    api_app_t *app = data;
    cm_path_t path;
    char dli[CM_ID_MAX + 1], ptid[CM_ID_MAX + 1], serial[CM_ID_MAX + 1];
    size_t v1;
    if (api_v1_path_or_reply(app, req, &path, &v1) != 0)
        return 0;
    size_t n = path.count - v1;
    if ((n != 5 && n != 6) || !cm_path_is(&path, v1 + 1, "devices") ||
        !cm_path_is(&path, v1 + 3, "registrations"))
        return -1;
    if (api_path_id(&path, v1 + 2, cm_id_is_plain, dli, sizeof(dli)) != 0) {
        cm_httpd_send_error(req, 400, "deviceLibraryIdentifier must be 1 to %d characters [A-Za-z0-9._-]",
                            CM_ID_MAX);
        return 0;
    }
    if (api_path_id(&path, v1 + 4, cm_id_is_pass_type, ptid, sizeof(ptid)) != 0) {
        cm_httpd_send_error(req, 404, "unknown passTypeIdentifier");
        return 0;
    }
    if (n == 5) {
        if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"))) {
            cm_httpd_add_header(req, "Allow", "GET");
            cm_httpd_send_error(req, 405, "method not allowed");
            return 0;
        }
        char buf[32];
        api_op_t *op = api_op_new(app, req);
        const char *args[] = {ptid, dli, since_tag(req, buf, sizeof(buf))};
        api_op_eval(op, API_SCRIPT_LIST, 3, args, NULL, on_listed);
        return 0;
    }
    if (api_path_id(&path, v1 + 5, cm_id_is_plain, serial, sizeof(serial)) != 0) {
        cm_httpd_send_error(req, 404, "unknown serialNumber");
        return 0;
    }
    int is_post = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("POST"));
    int is_delete = h2o_memis(req->method.base, req->method.len, H2O_STRLIT("DELETE"));
    if (!is_post && !is_delete)
        return api_method_not_allowed(req, "POST, DELETE");
    api_op_t *op = api_op_new(app, req);
    if (api_applepass_or_reply(op, req) != 0) {
        api_op_free(op);
        return 0;
    }
    memcpy(op->dli, dli, sizeof(dli));
    memcpy(op->ptid, ptid, sizeof(ptid));
    memcpy(op->serial, serial, sizeof(serial));
    api_pass_authorize(op, is_post ? register_authorized : unregister_authorized);
    return 0;
}

void api_routes_devices_register(api_app_t *app)
{
    api_route_v1(app, "/devices", on_devices);
}
