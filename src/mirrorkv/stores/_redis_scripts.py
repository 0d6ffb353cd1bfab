"""The Redis store's server-side Lua scripts and the helper that runs them by SHA.

Every write of :class:`~mirrorkv.stores.redis.RedisStore` is one script, so
the value, its metadata hash and its entry in the listing index change
together (Redis runs a script atomically: no other command runs in between).

Layout (``P`` is the namespace, wrapped in a hash tag ``{ns}`` on a cluster):

* ``P:<key>``: a string, the value itself (what ``GET`` returns);
* ``P#meta:<key>``: a string, a JSON object with ``size``, ``etag``,
  ``modified`` (POSIX seconds), ``version`` and, where they are not the
  defaults, ``content_type`` and ``metadata``. ``etag`` is absent after a
  native ``incr`` (Lua has no MD5); readers then compute it from the value,
  which they fetch in the same script. A string, not a hash, because
  ``SET`` also clears an expiry left by an earlier ``put(..., ttl=)`` and,
  with ``GET``, tells whether the key is new (and so needs its index
  entry) in the same call: each ``redis.call`` in a script costs some
  microseconds on the server, a third of a loopback round trip for three;
* ``P#index``: a sorted set of every key, all with score 0, so that
  ``ZRANGEBYLEX`` walks it in the byte order of the keys' UTF-8 (S3 order).

Scripts name the keys they touch through the value and meta key prefixes
they are given; on a cluster every one of them carries the same hash tag, so
they all live in the slot of ``KEYS[1]``.
"""

from __future__ import annotations

import hashlib
from typing import Any

from redis.exceptions import NoScriptError

__all__ = ["COPY", "DELETE", "DELETE_IF", "HEAD", "INCR", "LIST", "PUT", "Script"]


class Script:
    """A Lua script called by its SHA1 (``EVALSHA``), loaded on the first ``NOSCRIPT``."""

    __slots__ = ("lua", "sha")

    def __init__(self, lua: str) -> None:
        self.lua = lua
        self.sha = hashlib.sha1(lua.encode(), usedforsecurity=False).hexdigest().encode()

    def __call__(self, caller: Any, keys: tuple[str, ...], *args: Any, retry: bool = False) -> Any:
        """Run the script through ``caller`` (see ``_redis_client.Caller``): one round trip.

        Keys and arguments are str (sent as UTF-8), bytes or int.
        """
        command = [
            b"EVALSHA",
            self.sha,
            b"%d" % len(keys),
            *map(_encode, keys),
            *map(_encode, args),
        ]
        try:
            return caller.call_bytes(command, retry=retry)
        except NoScriptError:
            caller.load_script(self.lua)
            return caller.call_bytes(command, retry=retry)


def _encode(value: str | bytes | int) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    return b"%d" % value


# put(value, meta, index; member, data, meta_json[, ttl_ms[, condition, expected]])
# -> 1 written, 0 precondition failed, {value} when if_match meets a value
# without a stored etag (the caller compares the MD5 itself and retries with
# condition "v": the value equals the one it compared).
PUT = Script(
    """
local ttl, cond = ARGV[4] or '', ARGV[5]
if cond == '*' then
  if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
elseif cond == 'm' then
  local meta = redis.call('GET', KEYS[2])
  if not meta then return 0 end
  local etag = cjson.decode(meta).etag
  if not etag then return {redis.call('GET', KEYS[1])} end
  if etag ~= ARGV[6] then return 0 end
elseif cond == 'v' then
  if redis.call('GET', KEYS[1]) ~= ARGV[6] then return 0 end
end
local old
if ttl == '' then
  redis.call('SET', KEYS[1], ARGV[2])
  old = redis.call('SET', KEYS[2], ARGV[3], 'GET')
else
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ttl)
  old = redis.call('SET', KEYS[2], ARGV[3], 'PX', ttl, 'GET')
end
if not old then redis.call('ZADD', KEYS[3], 0, ARGV[1]) end
return 1
"""
)

# delete(value, meta, index; member) -> 1.
DELETE = Script(
    """
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""
)

# delete_if(value, meta, index; member, condition, expected) -> 1 deleted,
# 0 precondition failed, {value} where the value has no stored etag (the
# caller compares the MD5 itself and retries with condition "v", as for PUT).
DELETE_IF = Script(
    """
local meta = redis.call('GET', KEYS[2])
if not meta then return 0 end
if ARGV[2] == 'v' then
  if redis.call('GET', KEYS[1]) ~= ARGV[3] then return 0 end
else
  local etag = cjson.decode(meta).etag
  if not etag then return {redis.call('GET', KEYS[1])} end
  if etag ~= ARGV[3] then return 0 end
end
redis.call('DEL', KEYS[1], KEYS[2])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""
)

# head(value, meta; with_value) -> nil where absent, else {meta_json, value};
# the value is there when asked for or when the etag is not stored.
HEAD = Script(
    """
local meta = redis.call('GET', KEYS[2])
if not meta then return false end
if ARGV[1] == '1' or not string.find(meta, '^{"size":%d+,"etag":') then
  local value = redis.call('GET', KEYS[1])
  if not value then return false end
  return {meta, value}
end
return {meta}
"""
)

# A metadata JSON object built on the server (by incr and copy), in the field
# order the client writes: "etag", where there is one, right after "size", so
# that ETAG_FIRST tells whether it is there without decoding the JSON.
_META_JSON = """
local function meta_json(size, etag, modified, version, old)
  local parts = {'{"size":', size}
  if etag then parts[#parts + 1] = ',"etag":' .. cjson.encode(etag) end
  parts[#parts + 1] = ',"modified":' .. modified .. ',"version":' .. cjson.encode(version)
  if old and old.content_type then
    parts[#parts + 1] = ',"content_type":' .. cjson.encode(old.content_type)
  end
  if old and old.metadata then
    parts[#parts + 1] = ',"metadata":' .. cjson.encode(old.metadata)
  end
  return table.concat(parts) .. '}'
end
"""

# incr(value, meta, index; member, delta, created, modified, version) -> the
# new value as decimal bytes, or nil when the value is not an integer Redis
# can add to (the caller then takes the generic path, which says why).
INCR = Script(
    _META_JSON
    + """
local current = redis.call('GET', KEYS[1])
if not current then
  redis.call('SET', KEYS[1], ARGV[3])
  redis.call('SET', KEYS[2], meta_json(string.len(ARGV[3]), nil, ARGV[4], ARGV[5], nil))
  redis.call('ZADD', KEYS[3], 0, ARGV[1])
  return ARGV[3]
end
local result = redis.pcall('INCRBY', KEYS[1], ARGV[2])
if type(result) == 'table' and result.err then return false end
local value = redis.call('GET', KEYS[1])
local raw = redis.call('GET', KEYS[2])
local old = raw and cjson.decode(raw)
redis.call('SET', KEYS[2], meta_json(string.len(value), nil, ARGV[4], ARGV[5], old), 'KEEPTTL')
if not raw then redis.call('ZADD', KEYS[3], 0, ARGV[1]) end
return value
"""
)

# copy(source value, source meta, target value, target meta, index; target member,
#      modified, version) -> nil where the source is absent, else
#      {meta_json} or {meta_json, value} where the etag is not stored.
COPY = Script(
    _META_JSON
    + """
local value = redis.call('GET', KEYS[1])
if not value then return false end
local raw = redis.call('GET', KEYS[2])
local old = raw and cjson.decode(raw) or {}
local meta = meta_json(string.len(value), old.etag, ARGV[2], ARGV[3], old)
redis.call('SET', KEYS[3], value)
if not redis.call('SET', KEYS[4], meta, 'GET') then redis.call('ZADD', KEYS[5], 0, ARGV[1]) end
if old.etag then return {meta} end
return {meta, value}
"""
)

# list(index; min, max, count, value_prefix, meta_prefix, with_meta) ->
# {scanned, last member scanned, entries...}. An entry is the member alone
# (keys only) or the member, its metadata JSON and its value (where the etag
# is not stored; else nil). Index entries whose key has expired (a put with
# a ttl) are removed here: the index is pruned lazily, as listings pass.
LIST = Script(
    """
local members = redis.call('ZRANGEBYLEX', KEYS[1], ARGV[1], ARGV[2], 'LIMIT', 0, ARGV[3])
local out = {#members, members[#members] or ''}
local vp, mp, with_meta = ARGV[4], ARGV[5], ARGV[6] == '1'
for _, member in ipairs(members) do
  if with_meta then
    local meta = redis.call('GET', mp .. member)
    if meta then
      out[#out + 1] = member
      out[#out + 1] = meta
      if string.find(meta, '^{"size":%d+,"etag":') then
        out[#out + 1] = false
      else
        out[#out + 1] = redis.call('GET', vp .. member) or ''
      end
    else
      redis.call('ZREM', KEYS[1], member)
    end
  elseif redis.call('EXISTS', mp .. member) == 1 then
    out[#out + 1] = member
  else
    redis.call('ZREM', KEYS[1], member)
  end
end
return out
"""
)
