// Package luascript runs Argo CD resource customizations (health checks and actions) the
// way Argo CD does, in gopher-lua with the object as the global obj, so keyferry's scripts
// in config/argocd are proven by tests rather than only written.
package luascript

import (
	"errors"
	"fmt"
	"math"

	lua "github.com/yuin/gopher-lua"
)

// Health is what a health.lua returns.
type Health struct {
	Status  string `json:"status"`
	Message string `json:"message,omitempty"`
}

// RunHealth evaluates a health script on obj.
func RunHealth(script string, obj map[string]any) (Health, error) {
	ret, err := run(script, obj)
	if err != nil {
		return Health{}, err
	}
	t, ok := ret.(*lua.LTable)
	if !ok {
		return Health{}, fmt.Errorf("health script returned %s, want a table", ret.Type())
	}
	h := Health{Status: lua.LVAsString(t.RawGetString("status")), Message: lua.LVAsString(t.RawGetString("message"))}
	switch h.Status {
	case "Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown":
		return h, nil
	}
	return h, fmt.Errorf("health script returned status %q", h.Status)
}

// RunAction evaluates an action script (or a discovery script) on obj and returns the
// table it returns, as Go values.
func RunAction(script string, obj map[string]any) (any, error) {
	ret, err := run(script, obj)
	if err != nil {
		return nil, err
	}
	return fromLua(ret), nil
}

func run(script string, obj map[string]any) (lua.LValue, error) {
	L := lua.NewState(lua.Options{SkipOpenLibs: true})
	defer L.Close()
	// The libraries Argo CD opens for resource customizations.
	for _, lib := range []struct {
		name string
		fn   lua.LGFunction
	}{{lua.BaseLibName, lua.OpenBase}, {lua.TabLibName, lua.OpenTable}, {lua.StringLibName, lua.OpenString},
		{lua.MathLibName, lua.OpenMath}, {lua.OsLibName, lua.OpenOs}} {
		L.Push(L.NewFunction(lib.fn))
		L.Push(lua.LString(lib.name))
		L.Call(1, 0)
	}
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		return nil, err
	}
	if L.GetTop() == 0 {
		return nil, errors.New("script returned nothing")
	}
	return L.Get(-1), nil
}

func toLua(ls *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(x)
	case string:
		return lua.LString(x)
	case int64:
		return lua.LNumber(x)
	case int:
		return lua.LNumber(x)
	case float64:
		return lua.LNumber(x)
	case []any:
		t := ls.NewTable()
		for _, e := range x {
			t.Append(toLua(ls, e))
		}
		return t
	case map[string]any:
		t := ls.NewTable()
		for k, e := range x {
			t.RawSetString(k, toLua(ls, e))
		}
		return t
	}
	return lua.LString(fmt.Sprint(v))
}

// fromLua turns a Lua value back into JSON-shaped Go values: a table whose keys are
// exactly 1..n is a list, any other table a map.
func fromLua(v lua.LValue) any {
	switch x := v.(type) {
	case *lua.LNilType:
		return nil
	case lua.LBool:
		return bool(x)
	case lua.LString:
		return string(x)
	case lua.LNumber:
		f := float64(x)
		if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			return int64(f)
		}
		return f
	case *lua.LTable:
		n := x.MaxN()
		keys := 0
		x.ForEach(func(lua.LValue, lua.LValue) { keys++ })
		if n > 0 && n == keys {
			out := make([]any, 0, n)
			for i := 1; i <= n; i++ {
				out = append(out, fromLua(x.RawGetInt(i)))
			}
			return out
		}
		out := map[string]any{}
		x.ForEach(func(k, val lua.LValue) { out[lua.LVAsString(k)] = fromLua(val) })
		return out
	}
	return v.String()
}
