-- Axon's status view, inside HAProxy: HAProxy's own view of every Axon-managed backend —
-- server, address, state, weight, check status, current sessions — as a readable HTML page
-- (`/`) and as JSON (`/json`), with every server whose state differs from what axon-spoa wants
-- flagged.
--
--   global
--       lua-load /usr/share/axon/axon.lua
--       setenv AXON_SPOA_STATUS 127.0.0.1:9102    # axon-spoa's [status] listen address
--   frontend axon-admin
--       bind 127.0.0.1:8405
--       http-request use-service lua.axon-status
--
-- A task reads axon-spoa's `/wanted` (one slot a line: backend, server, address, ready|drain)
-- every second; the backends listed there are the Axon-managed ones. On HAProxy 2.6, servers
-- added with `add server` are not visible to Lua (fixed in 2.8): they are listed as such.

local wanted = { backends = {}, order = {}, fetched = nil, error = "not read yet" }
-- Read when used: `setenv` may come after `lua-load` in the global section.
local function spoa()
    return os.getenv("AXON_SPOA_STATUS")
end

-- Parses `/wanted`: backend -> server -> { addr, state }.
local function parse_wanted(body)
    local backends, order = {}, {}
    for line in body:gmatch("[^\n]+") do
        local backend, server, addr, state = line:match("^(%S+) (%S+) (%S+) (%S+)$")
        if backend then
            if not backends[backend] then
                backends[backend] = {}
                order[#order + 1] = backend
            end
            backends[backend][server] = { addr = addr, state = state }
        end
    end
    table.sort(order)
    return backends, order
end

local function refresh()
    local addr = spoa()
    if not addr then
        wanted.error = "AXON_SPOA_STATUS is not set"
        return
    end
    local ok, response = pcall(function()
        return core.httpclient():get({ url = "http://" .. addr .. "/wanted", timeout = 1000 })
    end)
    if ok and response and response.status == 200 then
        wanted.backends, wanted.order = parse_wanted(response.body or "")
        wanted.fetched = core.now().sec
        wanted.error = nil
    else
        wanted.error = "cannot read http://" .. addr .. "/wanted"
    end
end

core.register_task(function()
    while true do
        refresh()
        core.msleep(1000)
    end
end)

-- HAProxy's state of a server, as `show stat` words it: UP, DOWN, MAINT, DRAIN, ...
local function server_row(name, server, want)
    local stats = server:get_stats()
    local status = stats.status or "?"
    local row = {
        server = name,
        addr = server:get_addr(),
        state = status,
        weight = tonumber(stats.weight) or 0,
        check = stats.check_status or "",
        sessions = tonumber(stats.scur) or 0,
        wanted = want and want.state or "maint",
        flag = nil,
    }
    local maint = status:find("MAINT") ~= nil
    local drain = status:find("DRAIN") ~= nil or status:find("NOLB") ~= nil
    if want and want.state == "ready" then
        if maint or drain then
            row.flag = "axon-spoa wants it ready, HAProxy has it " .. status
        elseif want.addr ~= row.addr then
            row.flag = "axon-spoa wants " .. want.addr .. ", HAProxy has " .. row.addr
        end
    elseif want and want.state == "drain" then
        if not drain and not maint then
            row.flag = "axon-spoa wants it draining, HAProxy has it " .. status
        end
    elseif not maint then
        row.flag = "axon-spoa wants it in maintenance, HAProxy has it " .. status
    end
    return row
end

-- Every Axon-managed backend, with its servers.
local function view()
    local backends = {}
    for _, name in ipairs(wanted.order) do
        local want = wanted.backends[name]
        local proxy = core.backends[name]
        local rows, seen = {}, {}
        if proxy then
            local names = {}
            for server_name in pairs(proxy.servers) do
                names[#names + 1] = server_name
            end
            table.sort(names)
            for _, server_name in ipairs(names) do
                rows[#rows + 1] = server_row(server_name, proxy.servers[server_name], want[server_name])
                seen[server_name] = true
            end
        end
        for server_name, w in pairs(want) do
            if not seen[server_name] then
                rows[#rows + 1] = {
                    server = server_name, addr = w.addr, state = "?", weight = 0, check = "", sessions = 0,
                    wanted = w.state, flag = "not visible to Lua (added with `add server`; HAProxy < 2.8)",
                }
            end
        end
        backends[#backends + 1] = { name = name, exists = proxy ~= nil, servers = rows }
    end
    return backends
end

local function json_string(s)
    s = tostring(s)
    s = s:gsub('[%c"\\]', function(c)
        local named = { ['"'] = '\\"', ["\\"] = "\\\\", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }
        return named[c] or string.format("\\u%04x", c:byte())
    end)
    return '"' .. s .. '"'
end

local function to_json(backends)
    local out = {}
    for _, b in ipairs(backends) do
        local servers = {}
        for _, r in ipairs(b.servers) do
            servers[#servers + 1] = string.format(
                '{"server":%s,"addr":%s,"state":%s,"weight":%d,"check":%s,"sessions":%d,"wanted":%s,"flag":%s}',
                json_string(r.server), json_string(r.addr), json_string(r.state), r.weight, json_string(r.check),
                r.sessions, json_string(r.wanted), r.flag and json_string(r.flag) or "null")
        end
        out[#out + 1] = string.format('{"backend":%s,"exists":%s,"servers":[%s]}',
            json_string(b.name), tostring(b.exists), table.concat(servers, ","))
    end
    return string.format('{"spoa":%s,"error":%s,"backends":[%s]}', json_string(spoa() or ""),
        wanted.error and json_string(wanted.error) or "null", table.concat(out, ","))
end

local function html_escape(s)
    return (tostring(s):gsub("[&<>\"]", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;" }))
end

local function to_html(backends)
    local out = {
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Axon: HAProxy servers</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}",
        "td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}tr.flag{background:#fdd}",
        ".ok{color:#080}</style></head><body><h1>Axon-managed backends, as HAProxy sees them</h1>",
    }
    if wanted.error then
        out[#out + 1] = "<p class=\"flag\">axon-spoa: " .. html_escape(wanted.error) .. "</p>"
    end
    for _, b in ipairs(backends) do
        out[#out + 1] = "<h2>" .. html_escape(b.name) .. "</h2>"
        out[#out + 1] = "<table><tr><th>server</th><th>address</th><th>state</th><th>weight</th>"
            .. "<th>check</th><th>sessions</th><th>axon-spoa wants</th><th></th></tr>"
        for _, r in ipairs(b.servers) do
            out[#out + 1] = string.format(
                "<tr%s><td>%s</td><td>%s</td><td>%s</td><td>%d</td><td>%s</td><td>%d</td><td>%s</td><td>%s</td></tr>",
                r.flag and " class=\"flag\"" or "", html_escape(r.server), html_escape(r.addr), html_escape(r.state),
                r.weight, html_escape(r.check), r.sessions, html_escape(r.wanted),
                r.flag and ("&#9888; " .. html_escape(r.flag)) or "<span class=\"ok\">ok</span>")
        end
        out[#out + 1] = "</table>"
    end
    out[#out + 1] = "</body></html>\n"
    return table.concat(out)
end

core.register_service("axon-status", "http", function(applet)
    local backends = view()
    local body, kind
    if applet.path == "/json" then
        body, kind = to_json(backends), "application/json"
    else
        body, kind = to_html(backends), "text/html; charset=utf-8"
    end
    applet:set_status(200)
    applet:add_header("content-type", kind)
    applet:add_header("content-length", tostring(#body))
    applet:add_header("cache-control", "no-store")
    applet:start_response()
    applet:send(body)
end)
