"""The Redis index's Lua scripts: every write, and the reads that must see one moment.

Redis runs a script atomically, so an entry and the aggregates of its
prefixes change together and ``du`` stays exact with any number of writers.
Each script is sent by SHA (``EVALSHA``, one round trip) through
:class:`~mirrorkv.stores._redis_scripts.Script`.

Every script gets the Redis names of one bucket (see
:mod:`._redis_index_layout`): ``KEYS`` are the bucket's sorted set of keys,
its usage hash and its sorted set of directories; ``ARGV[1]`` is the prefix
of its object hashes (``{ns:bucket}:object:``), to which a script appends a
key. All of them share the bucket's hash tag, so on a cluster they live in
one slot.

Sizes travel as decimal strings. Lua numbers are doubles, exact up to 2**53,
so the client refuses larger sizes; a sum that would pass 2**53 is handed
on (to ``HINCRBY``, which adds 64-bit integers, or to the client) before it
does; and every number a script sends is formatted with ``%.0f``
(``tostring`` would give ``1e+15``).
"""

from __future__ import annotations

from ..stores._redis_scripts import Script

__all__ = [
    "CHILDREN",
    "FIELDS",
    "FORGET",
    "KEY_PAGE",
    "LS",
    "PAGE",
    "PARTIAL_DU",
    "RECORD",
    "REPLACE",
    "SWAP",
]

#: The fields of an object hash after ``Key``, in the order the scripts return them.
FIELDS = ("Size", "ETag", "LastModified", "ContentType", "Metadata", "VersionId")

# Collects the changes of one call per prefix ("" and each "/" prefix of a key),
# then applies each once: a prefix whose object count drops to zero loses its
# usage fields and its place in the directory set; one rising from zero joins it.
_AGGREGATES = """
local index, usage, dirs, base = KEYS[1], KEYS[2], KEYS[3], ARGV[1]
local deltas, order, EXACT = {}, {}, 2 ^ 53
local function note(key, objects, bytes)
  if objects == 0 and bytes == 0 then return end
  local at = 0
  while at do
    local prefix = string.sub(key, 1, at)
    local delta = deltas[prefix]
    if not delta then
      delta = {0, 0}
      deltas[prefix] = delta
      order[#order + 1] = prefix
    end
    delta[1] = delta[1] + objects
    if math.abs(delta[2] + bytes) >= EXACT then
      -- a double would round the sum: add what is there now
      redis.call('HINCRBY', usage, 'bytes:' .. prefix, string.format('%.0f', delta[2]))
      delta[2] = 0
    end
    delta[2] = delta[2] + bytes
    at = string.find(key, '/', at + 1, true)
  end
end
local function apply()
  for _, prefix in ipairs(order) do
    local objects, bytes = deltas[prefix][1], deltas[prefix][2]
    local gone = false
    if objects ~= 0 then
      local count = redis.call('HINCRBY', usage, 'objects:' .. prefix, objects)
      if count <= 0 then
        redis.call('HDEL', usage, 'objects:' .. prefix, 'bytes:' .. prefix)
        if prefix ~= '' then redis.call('ZREM', dirs, prefix) end
        gone = true
      elseif count == objects and prefix ~= '' then
        redis.call('ZADD', dirs, 0, prefix)
      end
    end
    if bytes ~= 0 and not gone then
      redis.call('HINCRBY', usage, 'bytes:' .. prefix, string.format('%.0f', bytes))
    end
  end
end
local function store(name, at)
  redis.call('HSET', name, 'Key', ARGV[at], 'Size', ARGV[at + 1], 'ETag', ARGV[at + 2],
    'LastModified', ARGV[at + 3], 'ContentType', ARGV[at + 4], 'Metadata', ARGV[at + 5],
    'VersionId', ARGV[at + 6])
end
"""

# How record and forget (and swap, which does either) change one entry: ``old``
# is the entry's Size as the caller read it (false where there is none).
_ENTRY = """
local function put(at, old)
  local key = ARGV[at]
  store(base .. key, at)
  if old then
    note(key, 0, tonumber(ARGV[at + 1]) - tonumber(old))
  else
    redis.call('ZADD', index, 0, key)
    note(key, 1, tonumber(ARGV[at + 1]))
  end
end
local function drop(key, old)
  if not old then return 0 end
  redis.call('DEL', base .. key)
  redis.call('ZREM', index, key)
  note(key, -1, -tonumber(old))
  return 1
end
"""

# record(keys, usage, dirs; base, then per record: key, size, etag, modified,
# content type, metadata JSON, version) -> 1.
RECORD = Script(
    _AGGREGATES
    + _ENTRY
    + """
for at = 2, #ARGV, 7 do
  put(at, redis.call('HGET', base .. ARGV[at], 'Size'))
end
apply()
return 1
"""
)

# forget(keys, usage, dirs; base, key...) -> how many entries were removed.
FORGET = Script(
    _AGGREGATES
    + _ENTRY
    + """
local removed = 0
for at = 2, #ARGV do
  removed = removed + drop(ARGV[at], redis.call('HGET', base .. ARGV[at], 'Size'))
end
apply()
return removed
"""
)

# swap(keys, usage, dirs; base, key, expected ('1' where there is an entry to
# expect, else ''), its etag, its version[, then the record as for record]) ->
# 1 applied, 0 not (the entry is not the expected one), 2 not applied but the
# entry already is the record in every field: what a resent swap whose first
# reply was lost finds (the client counts it applied). With no record, the
# entry is forgotten; an absent entry is then never counted as applied, since
# any concurrent forget leaves the same.
SWAP = Script(
    _AGGREGATES
    + _ENTRY
    + """
local key = ARGV[2]
local old = redis.call('HMGET', base .. key, 'Size', 'ETag', 'LastModified', 'ContentType',
  'Metadata', 'VersionId')
local expected
if ARGV[3] == '1' then
  expected = old[1] ~= false and old[2] == ARGV[4] and old[6] == ARGV[5]
else
  expected = old[1] == false
end
if not expected then
  if not old[1] or #ARGV < 6 then return 0 end
  for i = 1, 6 do
    if old[i] ~= ARGV[6 + i] then return 0 end
  end
  return 2
end
if #ARGV >= 6 then put(6, old[1]) else drop(key, old[1]) end
apply()
return 1
"""
)

# replace(keys, usage, dirs; base, min, max, then records as for record) ->
# {added, changed, removed}. The range [min, max] is in ZRANGEBYLEX's syntax.
REPLACE = Script(
    _AGGREGATES
    + """
local given = {}
for at = 4, #ARGV, 7 do given[ARGV[at]] = true end
local added, changed, removed = 0, 0, 0
for _, key in ipairs(redis.call('ZRANGEBYLEX', index, ARGV[2], ARGV[3])) do
  if not given[key] then
    local name = base .. key
    local old = redis.call('HGET', name, 'Size')
    redis.call('DEL', name)
    redis.call('ZREM', index, key)
    removed = removed + 1
    if old then note(key, -1, -tonumber(old)) end
  end
end
for at = 4, #ARGV, 7 do
  local key = ARGV[at]
  local name = base .. key
  local old = redis.call('HMGET', name, 'Size', 'ETag', 'LastModified', 'ContentType',
    'Metadata', 'VersionId')
  local same = old[1] ~= false
  for i = 1, 6 do
    if old[i] ~= ARGV[at + i] then same = false end
  end
  if not same then
    store(name, at)
    if old[1] then
      changed = changed + 1
      note(key, 0, tonumber(ARGV[at + 1]) - tonumber(old[1]))
    else
      added = added + 1
      redis.call('ZADD', index, 0, key)
      note(key, 1, tonumber(ARGV[at + 1]))
    end
  end
end
apply()
return {added, changed, removed}
"""
)

# page(keys; base, min, max, count) -> {scanned, last key scanned, JSON array
# of, per entry, its key and FIELDS}. A key whose hash is missing is left
# out. One JSON string, not a bulk string per field: redis-py (without
# hiredis) parses a reply item by item in Python, several µs each.
PAGE = Script(
    """
local keys = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[2], ARGV[3], 'LIMIT', 0, ARGV[4])
local rows = {}
for _, key in ipairs(keys) do
  local f = redis.call('HMGET', ARGV[1] .. key, 'Size', 'ETag', 'LastModified',
    'ContentType', 'Metadata', 'VersionId')
  if f[1] then
    rows[#rows + 1] = key
    for i = 1, 6 do rows[#rows + 1] = f[i] or '' end
  end
end
return {#keys, keys[#keys] or '', #rows > 0 and cjson.encode(rows) or '[]'}
"""
)

# key_page(zset; min, max, count) -> a JSON array of the members in [min, max]
# (at most count): ZRANGEBYLEX, in one bulk string for the parser's sake.
KEY_PAGE = Script(
    """
local keys = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
if #keys == 0 then return '[]' end
return cjson.encode(keys)
"""
)

# ls(keys; base, min, max, start, delimiter, budget) -> {done, next min, JSON
# array of 'p', common prefix  or  'o', key, FIELDS...}. ``start`` is the
# byte length of the listed prefix. After a common prefix it seeks past every
# key that starts with it (its last byte plus one is a bound above them all).
# Stops after ``budget`` keys read, so no call holds the server for long.
LS = Script(
    """
local low, high = ARGV[2], ARGV[3]
local start, delim, budget = tonumber(ARGV[4]), ARGV[5], tonumber(ARGV[6])
local rows, done = {}, 0
local page, read = 1, 0
while read < budget do
  local keys = redis.call('ZRANGEBYLEX', KEYS[1], low, high, 'LIMIT', 0, page)
  local seeked = false
  for _, key in ipairs(keys) do
    read = read + 1
    local at = string.find(key, delim, start + 1, true)
    if at then
      local common = string.sub(key, 1, at + #delim - 1)
      rows[#rows + 1] = 'p'
      rows[#rows + 1] = common
      low = '[' .. string.sub(common, 1, -2) .. string.char(string.byte(common, -1) + 1)
      seeked = true
      break
    end
    local f = redis.call('HMGET', ARGV[1] .. key, 'Size', 'ETag', 'LastModified',
      'ContentType', 'Metadata', 'VersionId')
    if f[1] then
      rows[#rows + 1] = 'o'
      rows[#rows + 1] = key
      for i = 1, 6 do rows[#rows + 1] = f[i] or '' end
    end
    low = '(' .. key
  end
  if seeked then
    page = 1
  elseif #keys < page then
    done = 1
    break
  else
    page = math.min(page * 4, 256)
  end
end
return {done, low, #rows > 0 and cjson.encode(rows) or '[]'}
"""
)

# partial_du(keys, usage; base, min, max, depth) -> {objects, bytes of the
# direct objects, the subdirectories' bytes joined by spaces}: the keys
# in [min, max]; ``depth`` is the byte length of the directory the prefix is
# in. A key with a "/" past it lies in a subdirectory, whose usage is read
# from the hash and whose keys are skipped with one seek; the others (the
# objects directly in the directory) are summed one by one. The client adds
# the subdirectories' byte counts, which may pass what a double holds exactly.
PARTIAL_DU = Script(
    """
local low, high, depth = ARGV[2], ARGV[3], tonumber(ARGV[4])
local objects, bytes, page, parts = 0, 0, 8, {}
while true do
  local keys = redis.call('ZRANGEBYLEX', KEYS[1], low, high, 'LIMIT', 0, page)
  local seeked = false
  for _, key in ipairs(keys) do
    local slash = string.find(key, '/', depth + 1, true)
    if slash then
      local child = string.sub(key, 1, slash)
      local u = redis.call('HMGET', KEYS[2], 'objects:' .. child, 'bytes:' .. child)
      objects = objects + (tonumber(u[1]) or 0)
      parts[#parts + 1] = u[2] or '0'
      low = '[' .. string.sub(child, 1, -2) .. '0'
      seeked = true
      break
    end
    local size = redis.call('HGET', ARGV[1] .. key, 'Size')
    if size then
      objects = objects + 1
      if bytes + tonumber(size) >= 2 ^ 53 then
        parts[#parts + 1] = string.format('%.0f', bytes)
        bytes = 0
      end
      bytes = bytes + tonumber(size)
    end
    low = '(' .. key
  end
  if seeked then
    page = 8
  elseif #keys < page then
    break
  else
    page = math.min(page * 4, 256)
  end
end
return {objects, string.format('%.0f', bytes), table.concat(parts, ' ')}
"""
)

# children(usage, dirs; prefix, min, max) -> {} when nothing is under the
# prefix, else {objects, bytes, JSON array of, per child directory in key
# order, its name, objects and bytes}. One seek in the directory set per child.
CHILDREN = Script(
    """
local prefix, low, high = ARGV[1], ARGV[2], ARGV[3]
local total = redis.call('HMGET', KEYS[1], 'objects:' .. prefix, 'bytes:' .. prefix)
if not total[1] then return {} end
local rows = {}
while true do
  local found = redis.call('ZRANGEBYLEX', KEYS[2], low, high, 'LIMIT', 0, 1)
  if #found == 0 then break end
  local slash = string.find(found[1], '/', #prefix + 1, true)
  local child = string.sub(found[1], 1, slash)
  local u = redis.call('HMGET', KEYS[1], 'objects:' .. child, 'bytes:' .. child)
  rows[#rows + 1] = child
  rows[#rows + 1] = u[1] or '0'
  rows[#rows + 1] = u[2] or '0'
  low = '[' .. string.sub(child, 1, -2) .. '0'
end
return {total[1], total[2] or '0', #rows > 0 and cjson.encode(rows) or '[]'}
"""
)
