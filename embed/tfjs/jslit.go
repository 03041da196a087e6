// Package tfjs reads the TensorFlow.js layers models that npm packages such as nsfwjs bundle
// as browserified JavaScript modules, and converts them to the imgfs model graph.
package tfjs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// maxDepth bounds nesting so a hostile file cannot exhaust the stack.
const maxDepth = 200

// ModuleExport finds the value assigned to `exports=` in a browserified module and parses it
// as a JavaScript literal (the subset minifiers emit: objects with bare or quoted keys, arrays,
// strings, numbers such as .5 or -0, !0/!1 for booleans, null).
func ModuleExport(src []byte) (any, error) {
	s := string(src)
	i := strings.Index(s, ".exports=")
	for i >= 0 {
		rest := s[i+len(".exports="):]
		if len(rest) > 0 && (rest[0] == '{' || rest[0] == '"' || rest[0] == '[' || rest[0] == '\'') {
			p := &parser{s: rest}
			v, err := p.value(0)
			if err != nil {
				return nil, fmt.Errorf("tfjs: parse module export at offset %d: %w", i+len(".exports=")+p.pos, err)
			}
			return v, nil
		}
		j := strings.Index(rest, ".exports=")
		if j < 0 {
			break
		}
		i += len(".exports=") + j
	}
	return nil, errors.New("tfjs: no literal `exports=` assignment found (not a bundled model module?)")
}

// ParseLiteral parses one JavaScript literal value that makes up the whole of s (spaces aside).
func ParseLiteral(s string) (any, error) {
	p := &parser{s: s}
	v, err := p.value(0)
	if err != nil {
		return nil, err
	}
	p.space()
	if p.pos != len(p.s) {
		return nil, fmt.Errorf("trailing data at offset %d", p.pos)
	}
	return v, nil
}

type parser struct {
	s   string
	pos int
}

func (p *parser) space() {
	for p.pos < len(p.s) {
		switch p.s[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

func (p *parser) errorf(format string, a ...any) error {
	return fmt.Errorf("offset %d: %s", p.pos, fmt.Sprintf(format, a...))
}

func (p *parser) value(depth int) (any, error) {
	if depth > maxDepth {
		return nil, p.errorf("nesting deeper than %d", maxDepth)
	}
	p.space()
	if p.pos >= len(p.s) {
		return nil, p.errorf("unexpected end of input")
	}
	c := p.s[p.pos]
	switch {
	case c == '{':
		return p.object(depth)
	case c == '[':
		return p.array(depth)
	case c == '"' || c == '\'':
		return p.str()
	case c == '!':
		// Minifiers write true as !0 and false as !1.
		if p.pos+1 < len(p.s) && (p.s[p.pos+1] == '0' || p.s[p.pos+1] == '1') {
			v := p.s[p.pos+1] == '0'
			p.pos += 2
			return v, nil
		}
		return nil, p.errorf("unsupported expression after '!'")
	case c == '-' || c == '+' || c == '.' || (c >= '0' && c <= '9'):
		return p.number()
	default:
		for _, kw := range []struct {
			w string
			v any
		}{{"null", nil}, {"true", true}, {"false", false}, {"void 0", nil}} {
			if strings.HasPrefix(p.s[p.pos:], kw.w) {
				p.pos += len(kw.w)
				return kw.v, nil
			}
		}
		return nil, p.errorf("unexpected character %q", c)
	}
}

func (p *parser) object(depth int) (any, error) {
	p.pos++ // '{'
	m := map[string]any{}
	p.space()
	if p.pos < len(p.s) && p.s[p.pos] == '}' {
		p.pos++
		return m, nil
	}
	for {
		p.space()
		if p.pos >= len(p.s) {
			return nil, p.errorf("unterminated object")
		}
		var key string
		switch c := p.s[p.pos]; {
		case c == '"' || c == '\'':
			k, err := p.str()
			if err != nil {
				return nil, err
			}
			key = k
		case isIdent(c, true) || (c >= '0' && c <= '9'):
			start := p.pos
			for p.pos < len(p.s) && isIdent(p.s[p.pos], false) {
				p.pos++
			}
			key = p.s[start:p.pos]
		default:
			return nil, p.errorf("bad object key start %q", c)
		}
		p.space()
		if p.pos >= len(p.s) || p.s[p.pos] != ':' {
			return nil, p.errorf("expected ':' after key %q", key)
		}
		p.pos++
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		m[key] = v
		p.space()
		if p.pos >= len(p.s) {
			return nil, p.errorf("unterminated object")
		}
		switch p.s[p.pos] {
		case ',':
			p.pos++
		case '}':
			p.pos++
			return m, nil
		default:
			return nil, p.errorf("expected ',' or '}' in object")
		}
	}
}

func (p *parser) array(depth int) (any, error) {
	p.pos++ // '['
	a := []any{}
	p.space()
	if p.pos < len(p.s) && p.s[p.pos] == ']' {
		p.pos++
		return a, nil
	}
	for {
		v, err := p.value(depth + 1)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		p.space()
		if p.pos >= len(p.s) {
			return nil, p.errorf("unterminated array")
		}
		switch p.s[p.pos] {
		case ',':
			p.pos++
		case ']':
			p.pos++
			return a, nil
		default:
			return nil, p.errorf("expected ',' or ']' in array")
		}
	}
}

func isIdent(c byte, first bool) bool {
	return c == '_' || c == '$' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (!first && c >= '0' && c <= '9')
}

func (p *parser) number() (any, error) {
	start := p.pos
	if p.s[p.pos] == '-' || p.s[p.pos] == '+' {
		p.pos++
	}
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		if (c >= '0' && c <= '9') || c == '.' || c == 'e' || c == 'E' ||
			((c == '-' || c == '+') && (p.s[p.pos-1] == 'e' || p.s[p.pos-1] == 'E')) {
			p.pos++
			continue
		}
		break
	}
	f, err := strconv.ParseFloat(p.s[start:p.pos], 64)
	if err != nil {
		return nil, p.errorf("bad number %q", p.s[start:p.pos])
	}
	return f, nil
}

func (p *parser) str() (string, error) {
	q := p.s[p.pos]
	p.pos++
	start := p.pos
	// Fast path: no escapes (the base64 weights are megabytes long).
	if j := strings.IndexByte(p.s[p.pos:], q); j >= 0 && !strings.Contains(p.s[p.pos:p.pos+j], `\`) {
		p.pos += j + 1
		return p.s[start : p.pos-1], nil
	}
	var b strings.Builder
	for p.pos < len(p.s) {
		c := p.s[p.pos]
		switch {
		case c == q:
			p.pos++
			return b.String(), nil
		case c == '\\':
			if p.pos+1 >= len(p.s) {
				return "", p.errorf("unterminated escape")
			}
			e := p.s[p.pos+1]
			p.pos += 2
			switch e {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case 'b':
				b.WriteByte('\b')
			case 'f':
				b.WriteByte('\f')
			case 'v':
				b.WriteByte('\v')
			case '0':
				b.WriteByte(0)
			case 'x', 'u':
				n := 2
				if e == 'u' {
					n = 4
				}
				if p.pos+n > len(p.s) {
					return "", p.errorf("short \\%c escape", e)
				}
				r, err := strconv.ParseUint(p.s[p.pos:p.pos+n], 16, 32)
				if err != nil {
					return "", p.errorf("bad \\%c escape", e)
				}
				p.pos += n
				b.WriteRune(rune(r))
			case '\n':
				// line continuation
			default:
				b.WriteByte(e)
			}
		default:
			_, size := utf8.DecodeRuneInString(p.s[p.pos:])
			b.WriteString(p.s[p.pos : p.pos+size])
			p.pos += size
		}
	}
	return "", p.errorf("unterminated string")
}
