package steps

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// TestStatusWritesGoThroughOnePatcher: each status has one writer. No code outside this
// package writes a status subresource (Status().Patch/Update), and each reconciler
// package calls PatchStatus only for the status of its own kind, so the workload
// reconciler (for one) can never write a binding's status again.
func TestStatusWritesGoThroughOnePatcher(t *testing.T) {
	own := map[string]string{ // package → the status field it may patch
		"binding":        "b.Status",
		"push":           "sp.Status",
		"clusterbinding": "c.Status",
		"connection":     "conn.ConnectionStatus()",
		"receiver":       "rr.Status",
	}
	root := filepath.Join("..", "..")
	patchers := map[string]int{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			// What ships; development tools (the bench's ceiling run writes statuses on
			// purpose) are not keyferry's reconcilers.
			switch rel, _ := filepath.Rel(root, path); rel {
			case ".git", "bin", "hack", "test", "docs", "config", "charts", filepath.Join("internal", "dev"):
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		pkg := filepath.Base(filepath.Dir(rel))
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if inner, ok := sel.X.(*ast.CallExpr); ok && (sel.Sel.Name == "Patch" || sel.Sel.Name == "Update") {
				// controllers/storage writes CRDs' storedVersions, no keyferry object's status.
				if s, ok := inner.Fun.(*ast.SelectorExpr); ok && s.Sel.Name == "Status" && filepath.Dir(rel) != filepath.Join("controllers", "steps") &&
					filepath.Dir(rel) != filepath.Join("controllers", "storage") {
					t.Errorf("%s: writes a status directly; use steps.PatchStatus", fset.Position(call.Pos()))
				}
			}
			if x, ok := sel.X.(*ast.Ident); ok && x.Name == "steps" && sel.Sel.Name == "PatchStatus" {
				want, known := own[pkg]
				if !known || len(call.Args) < 4 {
					t.Errorf("%s: package %s patches a status it does not own", fset.Position(call.Pos()), pkg)
					return true
				}
				if got := exprString(call.Args[3]); got != "&"+want && got != want {
					t.Errorf("%s: package %s patches %s, its own status is %s", fset.Position(call.Pos()), pkg, got, want)
				}
				patchers[pkg]++
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for pkg := range own {
		if patchers[pkg] != 1 {
			t.Errorf("package %s writes its status from %d places, want 1", pkg, patchers[pkg])
		}
	}
}

// exprString prints the few expression shapes a status argument takes.
func exprString(e ast.Expr) string {
	switch x := e.(type) {
	case *ast.UnaryExpr:
		return x.Op.String() + exprString(x.X)
	case *ast.SelectorExpr:
		return exprString(x.X) + "." + x.Sel.Name
	case *ast.CallExpr:
		return exprString(x.Fun) + "()"
	case *ast.Ident:
		return x.Name
	}
	return "?"
}
