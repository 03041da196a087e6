package tfjs

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestParseLiteral(t *testing.T) {
	cases := []struct {
		in   string
		want string // JSON of the expected value
	}{
		{`{a:1,"b":[.5,-0,1e-3,-2.5E2],c:!0,d:!1,e:null,$f_1:"x\"y\n\u0041\x42"}`,
			`{"$f_1":"x\"y\nAB","a":1,"b":[0.5,0,0.001,-250],"c":true,"d":false,"e":null}`},
		{`[ ]`, `[]`},
		{` { } `, `{}`},
		{`'single'`, `"single"`},
		{`[[["input_1",0,0,{}]]]`, `[[["input_1",0,0,{}]]]`},
		{`{x:void 0,y:true,z:false}`, `{"x":null,"y":true,"z":false}`},
	}
	for _, c := range cases {
		v, err := ParseLiteral(c.in)
		if err != nil {
			t.Fatalf("%s: %v", c.in, err)
		}
		var want any
		if err := json.Unmarshal([]byte(c.want), &want); err != nil {
			t.Fatal(err)
		}
		got, _ := json.Marshal(v)
		var g any
		json.Unmarshal(got, &g)
		if !reflect.DeepEqual(g, want) {
			t.Errorf("%s: got %s, want %s", c.in, got, c.want)
		}
	}
}

func TestParseLiteralErrors(t *testing.T) {
	for _, in := range []string{``, `{`, `[1,`, `{a 1}`, `"open`, `!2`, `{a:1}x`, `[1 2]`, `foo`, `{1a-:2}`, `"\u12"`,
		strings.Repeat("[", maxDepth+2) + strings.Repeat("]", maxDepth+2)} {
		if _, err := ParseLiteral(in); err == nil {
			t.Errorf("%q: no error", in)
		}
	}
}

func TestModuleExport(t *testing.T) {
	src := `!function(e){"object"==typeof exports&&"undefined"!=typeof module?module.exports=e():0}(function(){return function e(a,n,i){}({1:[function(e,a,n){a.exports={k:[1,2]}},{}]},{},[1])(1)});`
	v, err := ModuleExport([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(v, map[string]any{"k": []any{1.0, 2.0}}) {
		t.Fatalf("got %#v", v)
	}
	if _, err := ModuleExport([]byte(`module.exports=e();`)); err == nil {
		t.Fatal("no literal export: no error")
	}
	b, err := ParseShardModule([]byte(`x.exports="AAEC/w=="`))
	if err != nil || !reflect.DeepEqual(b, []byte{0, 1, 2, 255}) {
		t.Fatalf("shard: %v %v", b, err)
	}
}

// FuzzParseLiteral: the parser must never panic or hang on hostile input.
func FuzzParseLiteral(f *testing.F) {
	for _, s := range []string{`{a:1,"b":[.5,-0,1e-3],c:!0,d:!1,e:null}`, `"x\u0041"`, `[[["a",0,0,{}]]]`, `{`, `!`, `'\x4`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseLiteral(s)
		if err == nil {
			if _, err := json.Marshal(v); err != nil {
				// NaN/Inf can come from number parsing overflow; that is still a value.
				if !strings.Contains(err.Error(), "unsupported value") {
					t.Fatalf("unmarshalable value: %v", err)
				}
			}
		}
		ModuleExport([]byte("a.exports=" + s))
	})
}
