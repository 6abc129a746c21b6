-- "refresh" syncs the binding now (it sets the keyferry.dev/refresh annotation).
local actions = {}
actions["refresh"] = { ["disabled"] = false }
return actions
