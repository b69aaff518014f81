/*
 * The Lua scripts the api runs on Redis. Each one is atomic, so a change and its event are stored
 * together (nothing published without being stored, nor stored without being published). Key layout:
 * common/keys.h. Scripts return false (never nil) inside arrays so that Redis keeps every position.
 */
#ifndef API_SCRIPTS_H
#define API_SCRIPTS_H

/* ARGV: ptid, serial, dli, pushToken. Returns -1 (no such pass), 1 (new registration) or 0 (existing;
 * the push token is replaced: a device may get a new one). */
#define API_SCRIPT_REGISTER                                                                                  \
    "local pass = 'pk:pass:'..ARGV[1]..':'..ARGV[2]\n"                                                       \
    "if redis.call('EXISTS', pass) == 0 then return -1 end\n"                                                \
    "local added = redis.call('SADD', 'pk:regs:'..ARGV[1]..':'..ARGV[2], ARGV[3])\n"                         \
    "redis.call('SADD', 'pk:devpasses:'..ARGV[3]..':'..ARGV[1], ARGV[2])\n"                                  \
    "redis.call('SET', 'pk:devtoken:'..ARGV[3]..':'..ARGV[1], ARGV[4])\n"                                    \
    "return added\n"

/* ARGV: ptid, serial, dli. Removes the registration (if any) and the device's token for the pass type
 * once it has no registration of that type left. Returns 1 when something was removed, else 0. */
#define API_SCRIPT_UNREGISTER                                                                                \
    "redis.call('SREM', 'pk:regs:'..ARGV[1]..':'..ARGV[2], ARGV[3])\n"                                       \
    "local dp = 'pk:devpasses:'..ARGV[3]..':'..ARGV[1]\n"                                                    \
    "local removed = redis.call('SREM', dp, ARGV[2])\n"                                                      \
    "if redis.call('SCARD', dp) == 0 then redis.call('DEL', 'pk:devtoken:'..ARGV[3]..':'..ARGV[1]) end\n"    \
    "return removed\n"

/* ARGV: ptid, dli, since (a version number; 0 = everything; a tag this server never issued, beyond
 * pk:seq, from an older data set or another server, also counts as 0). Returns {} when nothing changed, else
 * {newest version, {serials sorted}} over the device's passes of that type with version > since. */
#define API_SCRIPT_LIST                                                                                      \
    "local serials = redis.call('SMEMBERS', 'pk:devpasses:'..ARGV[2]..':'..ARGV[1])\n"                       \
    "local since = tonumber(ARGV[3]) or 0\n"                                                                 \
    "if since > (tonumber(redis.call('GET', 'pk:seq')) or 0) then since = 0 end\n"                           \
    "local out, newest = {}, 0\n"                                                                            \
    "for _, s in ipairs(serials) do\n"                                                                       \
    "  local v = tonumber(redis.call('HGET', 'pk:pass:'..ARGV[1]..':'..s, 'version'))\n"                     \
    "  if v and v > since then\n"                                                                            \
    "    out[#out + 1] = s\n"                                                                                \
    "    if v > newest then newest = v end\n"                                                                \
    "  end\n"                                                                                                \
    "end\n"                                                                                                  \
    "if #out == 0 then return {} end\n"                                                                      \
    "table.sort(out)\n"                                                                                      \
    "return {string.format('%d', newest), out}\n"

/* ARGV: ptid, serial, templateId ('' = the pass's own). Returns {version, templateId, overrides,
 * authToken, template pass.json, teamIdentifier of the pass type, doc, lastModified}, each false when
 * absent. */
#define API_SCRIPT_WRITE_CONTEXT                                                                             \
    "local p = redis.call('HMGET', 'pk:pass:'..ARGV[1]..':'..ARGV[2], 'version', 'templateId',\n"            \
    "                     'overrides', 'authToken', 'doc', 'lastModified')\n"                                \
    "local tid = ARGV[3]\n"                                                                                  \
    "if tid == '' then tid = p[2] end\n"                                                                     \
    "local tpl = false\n"                                                                                    \
    "if tid then tpl = redis.call('HGET', 'pk:tpl:'..tid, 'file:pass.json') end\n"                           \
    "local team = redis.call('HGET', 'pk:passtype:'..ARGV[1], 'teamIdentifier')\n"                           \
    "return {p[1], p[2], p[3], p[4], tpl, team, p[5], p[6]}\n"

/* ARGV: ptid, serial, expected version ('0' = must not exist), templateId, overrides, doc, authToken.
 * Takes the next pk:seq value as the pass's version, a Last-Modified second that is strictly later
 * than the previous one, stores the pass and appends its event, atomically. Returns {-409} when the
 * version moved meanwhile (the caller retries), else {created (1|0), version, lastModified}. */
#define API_SCRIPT_WRITE_PASS                                                                                \
    "local key = 'pk:pass:'..ARGV[1]..':'..ARGV[2]\n"                                                        \
    "local cur = redis.call('HGET', key, 'version')\n"                                                       \
    "if (cur or '0') ~= ARGV[3] then return {-409} end\n"                                                    \
    "local v = redis.call('INCR', 'pk:seq')\n"                                                               \
    "local now = tonumber(redis.call('TIME')[1])\n"                                                          \
    "local prev = tonumber(redis.call('HGET', key, 'lastModified') or '0')\n"                                \
    "local lm = now\n"                                                                                       \
    "if lm <= prev then lm = prev + 1 end\n"                                                                 \
    "local created = 0\n"                                                                                    \
    "if not cur then\n"                                                                                      \
    "  created = 1\n"                                                                                        \
    "  redis.call('HSET', key, 'createdAt', string.format('%d', now), 'authToken', ARGV[7])\n"               \
    "end\n"                                                                                                  \
    "local vs, lms = string.format('%d', v), string.format('%d', lm)\n"                                      \
    "redis.call('HSET', key, 'templateId', ARGV[4], 'overrides', ARGV[5], 'doc', ARGV[6],\n"                 \
    "           'version', vs, 'lastModified', lms)\n"                                                       \
    "redis.call('XADD', 'pk:events', '*', 'type', created == 1 and 'pass.created' or 'pass.updated',\n"      \
    "           'passTypeIdentifier', ARGV[1], 'serialNumber', ARGV[2], 'version', vs)\n"                    \
    "return {created, v, lm}\n"

/* ARGV: templateId, then name, bytes pairs. Replaces the whole template and appends a
 * template.updated event. Returns {existed (1|0), revision}. */
#define API_SCRIPT_STORE_TEMPLATE                                                                            \
    "local key = 'pk:tpl:'..ARGV[1]\n"                                                                       \
    "local existed = redis.call('EXISTS', key)\n"                                                            \
    "redis.call('DEL', key)\n"                                                                               \
    "local rev = redis.call('INCR', 'pk:seq')\n"                                                             \
    "local n = 0\n"                                                                                          \
    "for i = 2, #ARGV, 2 do\n"                                                                               \
    "  redis.call('HSET', key, 'file:'..ARGV[i], ARGV[i + 1])\n"                                             \
    "  n = n + 1\n"                                                                                          \
    "end\n"                                                                                                  \
    "local revs = string.format('%d', rev)\n"                                                                \
    "redis.call('HSET', key, '@rev', revs, '@files', string.format('%d', n))\n"                              \
    "redis.call('XADD', 'pk:events', '*', 'type', 'template.updated', 'templateId', ARGV[1],\n"              \
    "           'revision', revs)\n"                                                                         \
    "return {existed, rev}\n"

/* ARGV: ptid, serial. Returns {} when unknown, else {the pass hash as a flat list, device count, the
 * names of the pass's own files, sorted}. */
#define API_SCRIPT_READ_PASS                                                                                 \
    "local h = redis.call('HGETALL', 'pk:pass:'..ARGV[1]..':'..ARGV[2])\n"                                   \
    "if #h == 0 then return {} end\n"                                                                        \
    "local own = redis.call('HKEYS', 'pk:passfile:'..ARGV[1]..':'..ARGV[2])\n"                               \
    "table.sort(own)\n"                                                                                      \
    "return {h, redis.call('SCARD', 'pk:regs:'..ARGV[1]..':'..ARGV[2]), own}\n"

/* ARGV: ptid, serial, file name. Returns {} when the pass is unknown, else {version, the names of the
 * template's files, the names of the pass's own files, the bytes of the pass's own files other than
 * this name}. */
#define API_SCRIPT_PASSFILE_CONTEXT                                                                          \
    "local p = redis.call('HMGET', 'pk:pass:'..ARGV[1]..':'..ARGV[2], 'version', 'templateId')\n"            \
    "if not p[1] then return {} end\n"                                                                       \
    "local tfiles = {}\n"                                                                                    \
    "if p[2] then\n"                                                                                         \
    "  for _, f in ipairs(redis.call('HKEYS', 'pk:tpl:'..p[2])) do\n"                                        \
    "    if string.sub(f, 1, 5) == 'file:' then tfiles[#tfiles + 1] = string.sub(f, 6) end\n"                \
    "  end\n"                                                                                                \
    "end\n"                                                                                                  \
    "local fkey = 'pk:passfile:'..ARGV[1]..':'..ARGV[2]\n"                                                   \
    "local own, bytes = redis.call('HKEYS', fkey), 0\n"                                                      \
    "for _, n in ipairs(own) do\n"                                                                           \
    "  if n ~= ARGV[3] then bytes = bytes + redis.call('HSTRLEN', fkey, n) end\n"                            \
    "end\n"                                                                                                  \
    "return {p[1], tfiles, own, bytes}\n"

/* Lua fragment for the file scripts: with `key` the pass's hash, takes the next pk:seq value as the
 * pass's version and a strictly later Last-Modified second, and appends a pass.updated event, as
 * API_SCRIPT_WRITE_PASS does. Leaves `v` and `lm` (numbers). */
#define API_LUA_NEXT_VERSION                                                                                 \
    "local v = redis.call('INCR', 'pk:seq')\n"                                                               \
    "local now = tonumber(redis.call('TIME')[1])\n"                                                          \
    "local prev = tonumber(redis.call('HGET', key, 'lastModified') or '0')\n"                                \
    "local lm = now\n"                                                                                       \
    "if lm <= prev then lm = prev + 1 end\n"                                                                 \
    "local vs = string.format('%d', v)\n"                                                                    \
    "redis.call('HSET', key, 'version', vs, 'lastModified', string.format('%d', lm))\n"                      \
    "redis.call('XADD', 'pk:events', '*', 'type', 'pass.updated', 'passTypeIdentifier', ARGV[1],\n"          \
    "           'serialNumber', ARGV[2], 'version', vs)\n"

/* ARGV: ptid, serial, expected version, file name, bytes. Stores the pass's own file, with a new pass
 * version and its event, atomically. Returns {-404} (no pass), {-409} (the version moved meanwhile:
 * the caller checks again), {0, version, lastModified} when the pass already had these very bytes
 * under that name (nothing changes, no event), else {1 (replaced) | 2 (new), version, lastModified}. */
#define API_SCRIPT_WRITE_PASSFILE                                                                            \
    "local key = 'pk:pass:'..ARGV[1]..':'..ARGV[2]\n"                                                        \
    "local cur = redis.call('HGET', key, 'version')\n"                                                       \
    "if not cur then return {-404} end\n"                                                                    \
    "if cur ~= ARGV[3] then return {-409} end\n"                                                             \
    "local fkey = 'pk:passfile:'..ARGV[1]..':'..ARGV[2]\n"                                                   \
    "local old = redis.call('HGET', fkey, ARGV[4])\n"                                                        \
    "if old == ARGV[5] then\n"                                                                               \
    "  return {0, tonumber(cur), tonumber(redis.call('HGET', key, 'lastModified') or '0')}\n"                \
    "end\n"                                                                                                  \
    "redis.call('HSET', fkey, ARGV[4], ARGV[5])\n" API_LUA_NEXT_VERSION "return {old and 1 or 2, v, lm}\n"

/* ARGV: ptid, serial, file name. Removes the pass's own file, with a new pass version and its event,
 * atomically. Returns {-404} (no pass), {-410} (no such file), else {1, version, lastModified}. */
#define API_SCRIPT_DELETE_PASSFILE                                                                           \
    "local key = 'pk:pass:'..ARGV[1]..':'..ARGV[2]\n"                                                        \
    "if redis.call('EXISTS', key) == 0 then return {-404} end\n"                                             \
    "local fkey = 'pk:passfile:'..ARGV[1]..':'..ARGV[2]\n"                                                   \
    "if redis.call('HDEL', fkey, ARGV[3]) == 0 then return {-410} end\n" API_LUA_NEXT_VERSION                \
    "return {1, v, lm}\n"

/* ARGV: max lines kept, then the log lines. */
#define API_SCRIPT_APPEND_LOGS                                                                               \
    "for i = 2, #ARGV do redis.call('RPUSH', 'pk:logs', ARGV[i]) end\n"                                      \
    "redis.call('LTRIM', 'pk:logs', -tonumber(ARGV[1]), -1)\n"                                               \
    "return #ARGV - 1\n"

#endif
