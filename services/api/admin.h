/*
 * Admin handlers, called by routes_admin.c after the bearer token and the path were checked. Each takes
 * ownership of op (identifiers already set) and answers the request.
 */
#ifndef API_ADMIN_H
#define API_ADMIN_H

#include "request.h"

void api_admin_put_template(api_op_t *op, h2o_req_t *req);
void api_admin_write_pass(api_op_t *op, h2o_req_t *req);
void api_admin_get_pass(api_op_t *op, h2o_req_t *req);
/* PUT (body = the file's bytes) and DELETE /admin/v1/passes/{ptid}/{serial}/files/{name}; op->file set. */
void api_admin_put_pass_file(api_op_t *op, h2o_req_t *req);
void api_admin_delete_pass_file(api_op_t *op, h2o_req_t *req);
/* GET|HEAD /admin/v1/pkpasses?pass=<ptid>/<serial>&...: the .pkpasses of 2 to 10 passes (admin_pkpasses.c).
 * Answers the request itself; returns 0 (a route handler's "taken"). */
int api_admin_get_pkpasses(api_app_t *app, h2o_req_t *req);

#endif
