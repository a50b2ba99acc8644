package topology_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/watershed-io/watershed/codecs"
	"github.com/watershed-io/watershed/topology"
)

// forbiddenAPIImport reports whether an import path's types must stay out
// of topology's exported API: goka's, sarama's and the framework's internal
// packages (whose types lead to them).
func forbiddenAPIImport(path string) bool {
	return strings.HasPrefix(path, "github.com/lovoo/goka") ||
		strings.HasPrefix(path, "github.com/IBM/sarama") ||
		strings.Contains(path, "/topology/internal/")
}

// apiSource is package topology's source as go/parser reads it: its
// files' imports, its type declarations and the methods of each type.
type apiSource struct {
	imports map[*ast.File]map[string]string // local name -> import path
	types   map[string]*ast.TypeSpec
	typeOf  map[string]*ast.File
	methods map[string][]*ast.FuncDecl
	funcs   []*ast.FuncDecl
	values  []*ast.ValueSpec
	fileOf  map[ast.Node]*ast.File
}

func parseAPI(t *testing.T, dir string) *apiSource {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	src := &apiSource{imports: map[*ast.File]map[string]string{}, types: map[string]*ast.TypeSpec{},
		typeOf: map[string]*ast.File{}, methods: map[string][]*ast.FuncDecl{}, fileOf: map[ast.Node]*ast.File{}}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		if f.Name.Name != "topology" {
			continue
		}
		imps := map[string]string{}
		for _, im := range f.Imports {
			path, _ := strconv.Unquote(im.Path.Value)
			local := path[strings.LastIndex(path, "/")+1:]
			if im.Name != nil {
				local = im.Name.Name
			}
			imps[local] = path
		}
		src.imports[f] = imps
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				src.fileOf[d] = f
				if d.Recv == nil {
					src.funcs = append(src.funcs, d)
					continue
				}
				recv := d.Recv.List[0].Type
				if s, ok := recv.(*ast.StarExpr); ok {
					recv = s.X
				}
				switch r := recv.(type) {
				case *ast.IndexExpr:
					recv = r.X
				case *ast.IndexListExpr:
					recv = r.X
				}
				if id, ok := recv.(*ast.Ident); ok {
					src.methods[id.Name] = append(src.methods[id.Name], d)
				}
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						src.types[s.Name.Name] = s
						src.typeOf[s.Name.Name] = f
					case *ast.ValueSpec:
						src.fileOf[s] = f
						src.values = append(src.values, s)
					}
				}
			}
		}
	}
	if len(src.types) == 0 {
		t.Fatalf("no declarations of package topology in %s", dir)
	}
	return src
}

// leaks returns "where: pkg.Name" for every goka, sarama or internal type
// that the exported API names: exported functions, methods, types, fields,
// variables and constants, and what they reach through unexported types
// of the package (their exported fields and methods, which outside code
// may use on a value it got).
func (src *apiSource) leaks() []string {
	var out []string
	seen := map[string]bool{}
	var queue []string
	// walk looks at a type expression (or a whole declaration) of file f.
	walk := func(where string, f *ast.File, n ast.Node) {
		if n == nil {
			return
		}
		ast.Inspect(n, func(n ast.Node) bool {
			switch x := n.(type) {
			case *ast.SelectorExpr:
				if id, ok := x.X.(*ast.Ident); ok {
					if path, ok := src.imports[f][id.Name]; ok && forbiddenAPIImport(path) {
						out = append(out, where+": "+id.Name+"."+x.Sel.Name)
					}
				}
				return false
			case *ast.Ident:
				if _, local := src.types[x.Name]; local && !seen[x.Name] {
					seen[x.Name] = true
					queue = append(queue, x.Name)
				}
			case *ast.BlockStmt:
				return false // bodies are not API
			case *ast.CompositeLit, *ast.FuncLit, *ast.CallExpr:
				return false // values: their types are the declaration's
			}
			return true
		})
	}
	// typeExpr walks the exported (and embedded) fields of a struct, the
	// methods of an interface, or any other type expression.
	typeExpr := func(where string, f *ast.File, e ast.Expr) {
		switch x := e.(type) {
		case *ast.StructType:
			for _, fl := range x.Fields.List {
				exported := len(fl.Names) == 0
				for _, n := range fl.Names {
					exported = exported || n.IsExported()
				}
				if exported {
					walk(where, f, fl.Type)
				}
			}
		case *ast.InterfaceType:
			walk(where, f, x)
		default:
			walk(where, f, e)
		}
	}
	signature := func(where string, d *ast.FuncDecl) {
		f := src.fileOf[d]
		walk(where, f, d.Type)
	}
	for _, d := range src.funcs {
		if d.Name.IsExported() {
			signature(d.Name.Name, d)
		}
	}
	for name := range src.types {
		if ast.IsExported(name) && !seen[name] {
			seen[name] = true
			queue = append(queue, name)
		}
	}
	for _, vs := range src.values {
		for _, n := range vs.Names {
			if n.IsExported() {
				walk(n.Name, src.fileOf[vs], vs.Type)
			}
		}
	}
	for len(queue) > 0 {
		name := queue[0]
		queue = queue[1:]
		ts := src.types[name]
		f := src.typeOf[name]
		where := "type " + name
		if ts.TypeParams != nil {
			walk(where, f, ts.TypeParams)
		}
		typeExpr(where, f, ts.Type)
		for _, m := range src.methods[name] {
			if m.Name.IsExported() {
				signature(name+"."+m.Name.Name, m)
			}
		}
	}
	sort.Strings(out)
	return out
}

// TestExportedAPINamesNoGokaSaramaOrInternalType holds the exported API of
// package topology, read from its source, to naming no type of goka,
// sarama or topology/internal/*, directly or through an unexported type
// that it returns or takes: outside code can reach goka through none of
// them.
func TestExportedAPINamesNoGokaSaramaOrInternalType(t *testing.T) {
	for _, leak := range parseAPI(t, ".").leaks() {
		t.Errorf("the exported API names %s", leak)
	}
}

// The check finds what it looks for: a function returning goka's
// processor, a field of an internal type, a method of an unexported type
// reached from an exported function, an alias.
func TestExportedAPICheckFindsLeaks(t *testing.T) {
	dir := t.TempDir()
	code := `package topology

import (
	"github.com/lovoo/goka"
	"github.com/watershed-io/watershed/topology/internal/gokabind"
	kafka "github.com/IBM/sarama"
)

type Options struct {
	Storage gokabind.TableStorage
	hidden  goka.Codec
}

func Build() (*goka.Processor, error) { return nil, nil }

type binding struct{}

func (binding) NewProcessor(opts ...goka.ProcessorOption) {}

func (binding) unexported(goka.Context) {}

func Bind() binding { return binding{} }

type Config = kafka.Config

type quiet struct{}

func (quiet) Consume(kafka.ConsumerGroupHandler) {}
`
	if err := os.WriteFile(filepath.Join(dir, "api.go"), []byte(code), 0o644); err != nil {
		t.Fatal(err)
	}
	got := strings.Join(parseAPI(t, dir).leaks(), "\n")
	want := "Build: goka.Processor\nbinding.NewProcessor: goka.ProcessorOption\ntype Config: kafka.Config\ntype Options: gokabind.TableStorage"
	if got != want {
		t.Errorf("leaks:\n%s\nwant:\n%s", got, want)
	}
}

// Plan.Bind, the test driver's way to goka, gives outside code nothing:
// any value but the framework's internal request is refused.
func TestBindRefusesWhatOutsideCodeCanPass(t *testing.T) {
	tp := topology.New("bind")
	in := topology.NewStream(tp, "in", codecs.String{}, topology.External("test"))
	p := tp.Processor("p")
	topology.Consume(p, in, func(*topology.Context, string, string) error { return nil })
	plan := build(t, tp)
	var binding struct {
		Group   string
		Binding any
	}
	binding.Group = "p"
	for _, req := range []any{nil, &binding, binding, "p"} {
		if err := plan.Bind(req); err == nil {
			t.Errorf("Bind(%T) accepted", req)
		}
	}
	if binding.Binding != nil {
		t.Error("Bind filled a request of outside code")
	}
}
