-- Sync now: keyferry reads the vault again whenever keyferry.dev/refresh changes.
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["keyferry.dev/refresh"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
