/*
 * PUT /admin/v1/templates/{templateId}: store a pass model uploaded as a zip; see routes_admin.c.
 *
 * Three steps: read the zip (template_zip.c: 400 for what is not a readable pass model), check that
 * Wallet would take a pass made of it as it is, with no overrides (common/bundle_files.h and
 * common/passjson_check.h: 422 listing every problem), then store it in one script. Nothing is
 * stored unless every check passed.
 */
#include "admin.h"
#include "common/bundle_files.h"
#include "common/limits.h"
#include "common/log.h"
#include "common/passjson_check.h"
#include "common/problems.h"
#include "metrics.h"
#include "scripts.h"
#include "template_zip.h"

#include <hiredis/hiredis.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static void on_stored(redisReply *reply, void *data)
{
    api_op_t *op = data;
    if (reply != NULL && reply->type == REDIS_REPLY_ARRAY && reply->elements == 2)
        api_metrics_event(op->app->metrics, "template.updated");
    h2o_req_t *req = api_op_req_or_reply(op, reply, REDIS_REPLY_ARRAY, 2);
    if (req == NULL)
        goto out;
    int existed = reply->element[0]->integer == 1;
    json_object_set_new(op->body, "revision", json_integer(reply->element[1]->integer));
    CM_LOG(CM_LOG_INFO, "event=template_stored template=%s revision=%lld files=%zu ignored=%zu",
           op->template_id, reply->element[1]->integer, json_array_size(json_object_get(op->body, "files")),
           json_array_size(json_object_get(op->body, "ignored")));
    cm_httpd_send_json(req, existed ? 200 : 201, op->body);
out:
    api_op_free(op);
}

/* Every problem Wallet would have with a pass made of the template as it is, into problems. */
static void check_template(const api_template_t *t, cm_problems_t *problems)
{
    cm_file_t files[API_TEMPLATE_MAX_FILES];
    for (size_t i = 0; i < t->count; i++)
        files[i] = (cm_file_t){.name = t->files[i].name,
                               .data = (const unsigned char *)t->files[i].data,
                               .len = t->files[i].len};
    cm_bundle_files_check(files, t->count, problems);
    if (t->pass_json == NULL)
        return;
    if (json_is_object(t->pass_json)) {
        char *compact = json_dumps(t->pass_json, JSON_COMPACT);
        if (compact == NULL)
            abort();
        if (strlen(compact) > CM_PASS_DOC_MAX_BYTES)
            cm_problems_add_file(problems, "pass.json",
                                 "is %zu bytes once compacted, more than the %u a pass may have",
                                 strlen(compact), CM_PASS_DOC_MAX_BYTES);
        free(compact);
    }
    cm_passjson_check(t->pass_json, problems);
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
    cm_problems_t *problems = cm_problems_new();
    check_template(t, problems);
    if (cm_problems_count(problems) > 0) {
        CM_LOG(CM_LOG_INFO, "event=template_refused template=%s problems=%zu", op->template_id,
               cm_problems_count(problems));
        json_t *body = cm_problems_body(problems, "pass model refused");
        json_object_set_new(body, "templateId", json_string(op->template_id));
        cm_httpd_send_json(req, 422, body);
        json_decref(body);
        cm_problems_free(problems);
        api_template_dispose(t);
        free(t);
        api_op_free(op);
        return;
    }
    cm_problems_free(problems);
    const char *args[1 + 2 * API_TEMPLATE_MAX_FILES];
    size_t lens[1 + 2 * API_TEMPLATE_MAX_FILES];
    json_t *names = json_array(), *ignored = json_array();
    for (size_t i = 0; i < t->ignored_count; i++)
        json_array_append_new(ignored, json_string(t->ignored[i]));
    args[0] = op->template_id;
    lens[0] = strlen(op->template_id);
    for (size_t i = 0; i < t->count; i++) {
        args[1 + 2 * i] = t->files[i].name;
        lens[1 + 2 * i] = strlen(t->files[i].name);
        args[2 + 2 * i] = t->files[i].data;
        lens[2 + 2 * i] = t->files[i].len;
        json_array_append_new(names, json_string(t->files[i].name));
    }
    op->body = json_pack("{s:s,s:o,s:o}", "templateId", op->template_id, "files", names, "ignored", ignored);
    /* hiredis copies the arguments into its output buffer before api_op_eval returns. */
    api_op_eval(op, API_SCRIPT_STORE_TEMPLATE, 1 + 2 * (int)t->count, args, lens, on_stored);
    api_template_dispose(t);
    free(t);
}
