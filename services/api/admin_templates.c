/* PUT /admin/v1/templates/{templateId}: store a pass model uploaded as a zip; see routes_admin.c. */
#include "admin.h"
#include "common/log.h"
#include "scripts.h"
#include "template_zip.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void on_stored(redisReply *reply, void *data)
{
    api_op_t *op = data;
    h2o_req_t *req = api_op_req_or_reply(op, reply, REDIS_REPLY_ARRAY, 2);
    if (req == NULL)
        goto out;
    int existed = reply->element[0]->integer == 1;
    json_object_set_new(op->body, "revision", json_integer(reply->element[1]->integer));
    CM_LOG(CM_LOG_INFO, "event=template_stored template=%s revision=%lld files=%zu", op->template_id,
           reply->element[1]->integer, json_array_size(json_object_get(op->body, "files")));
    cm_httpd_send_json(req, existed ? 200 : 201, op->body);
out:
    api_op_free(op);
}

void api_admin_put_template(api_op_t *op, h2o_req_t *req)
{
    api_template_t *t = malloc(sizeof(*t));
    json_t *error = NULL;
    if (t == NULL)
        abort();
    if (api_template_from_zip(req->entity.base, req->entity.len, t, &error) != 0) {
        CM_LOG(CM_LOG_INFO, "event=template_refused template=%s reason=\"%s\"", op->template_id,
               json_string_value(json_object_get(error, "error")));
        json_object_set_new(error, "templateId", json_string(op->template_id));
        cm_httpd_send_json(req, 400, error);
        json_decref(error);
        free(t);
        api_op_free(op);
        return;
    }
    const char *args[1 + 2 * API_TEMPLATE_MAX_FILES];
    size_t lens[1 + 2 * API_TEMPLATE_MAX_FILES];
    json_t *names = json_array();
    args[0] = op->template_id;
    lens[0] = strlen(op->template_id);
    for (size_t i = 0; i < t->count; i++) {
        args[1 + 2 * i] = t->files[i].name;
        lens[1 + 2 * i] = strlen(t->files[i].name);
        args[2 + 2 * i] = t->files[i].data;
        lens[2 + 2 * i] = t->files[i].len;
        json_array_append_new(names, json_string(t->files[i].name));
    }
    op->body = json_pack("{s:s,s:o}", "templateId", op->template_id, "files", names);
    /* hiredis copies the arguments into its output buffer before api_op_eval returns. */
    api_op_eval(op, API_SCRIPT_STORE_TEMPLATE, 1 + 2 * (int)t->count, args, lens, on_stored);
    api_template_dispose(t);
    free(t);
}
