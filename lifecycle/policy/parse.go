package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode"
)

// ErrSyntax marks a check string that is not oslo.policy's check language.
var ErrSyntax = errors.New("policy syntax error")

// MaxDepth bounds how deeply parentheses and "not" may nest in one check
// string, so that neither parsing nor evaluating a hostile policy file can
// exhaust the stack. Glance's own defaults nest three deep.
const MaxDepth = 32

// maxCheckLength bounds one check string: Glance's longest default is
// under 300 bytes.
const maxCheckLength = 64 << 10

// Parse reads a check string in oslo.policy's language:
//
//	@                          always
//	!                          never
//	role:NAME                  the caller holds role NAME (any case)
//	rule:NAME                  the rule NAME allows
//	KEY:VALUE                  the caller's KEY (project_id, user_id, roles,
//	                           is_admin) is VALUE
//	'LITERAL':%(ATTR)s         the target's ATTR is LITERAL (also True,
//	                           False, None, integers)
//	A and B, A or B, not A, ( )
//
// VALUE and NAME may take the target's attributes as %(ATTR)s; "and" binds
// tighter than "or", "not" tighter than both, as in oslo.policy. The empty
// string always allows. Where oslo.policy logs a malformed check and fails
// closed, Parse returns an error wrapping ErrSyntax, so that a policy file
// with a typo is refused at startup rather than denying in silence.
func Parse(text string) (Check, error) {
	if len(text) > maxCheckLength {
		return nil, fmt.Errorf("%w: check string of %d bytes (at most %d)", ErrSyntax, len(text), maxCheckLength)
	}
	toks, err := tokenize(text)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return always{}, nil
	}
	p := &parser{toks: toks}
	c, err := p.or(0)
	if err != nil {
		return nil, err
	}
	if p.pos < len(p.toks) {
		return nil, fmt.Errorf("%w: unexpected %s", ErrSyntax, p.toks[p.pos])
	}
	return c, nil
}

type tokenKind int

const (
	tokCheck tokenKind = iota
	tokAnd
	tokOr
	tokNot
	tokOpen
	tokClose
)

type token struct {
	kind tokenKind
	text string
}

func (t token) String() string {
	switch t.kind {
	case tokOpen:
		return `"("`
	case tokClose:
		return `")"`
	}
	return strconv.Quote(t.text)
}

// tokenize splits text as oslo.policy does: on whitespace, with leading
// "(" and trailing ")" peeled off each word (a check's own parentheses,
// as in %(project_id)s, are inside it, never at its ends).
func tokenize(text string) ([]token, error) {
	var toks []token
	for _, word := range strings.FieldsFunc(text, unicode.IsSpace) {
		for strings.HasPrefix(word, "(") {
			toks = append(toks, token{kind: tokOpen})
			word = word[1:]
		}
		trail := 0
		for strings.HasSuffix(word, ")") {
			trail++
			word = word[:len(word)-1]
		}
		if word != "" {
			switch strings.ToLower(word) {
			case "and":
				toks = append(toks, token{kind: tokAnd, text: word})
			case "or":
				toks = append(toks, token{kind: tokOr, text: word})
			case "not":
				toks = append(toks, token{kind: tokNot, text: word})
			default:
				toks = append(toks, token{kind: tokCheck, text: word})
			}
		}
		for ; trail > 0; trail-- {
			toks = append(toks, token{kind: tokClose})
		}
	}
	return toks, nil
}

type parser struct {
	toks []token
	pos  int
}

func (p *parser) peek() (token, bool) {
	if p.pos < len(p.toks) {
		return p.toks[p.pos], true
	}
	return token{}, false
}

// or: and ("or" and)*
func (p *parser) or(depth int) (Check, error) {
	first, err := p.and(depth)
	if err != nil {
		return nil, err
	}
	checks := []Check{first}
	for {
		t, ok := p.peek()
		if !ok || t.kind != tokOr {
			break
		}
		p.pos++
		c, err := p.and(depth)
		if err != nil {
			return nil, err
		}
		checks = append(checks, c)
	}
	if len(checks) == 1 {
		return first, nil
	}
	return anyOf(checks), nil
}

// and: unary ("and" unary)*
func (p *parser) and(depth int) (Check, error) {
	first, err := p.unary(depth)
	if err != nil {
		return nil, err
	}
	checks := []Check{first}
	for {
		t, ok := p.peek()
		if !ok || t.kind != tokAnd {
			break
		}
		p.pos++
		c, err := p.unary(depth)
		if err != nil {
			return nil, err
		}
		checks = append(checks, c)
	}
	if len(checks) == 1 {
		return first, nil
	}
	return allOf(checks), nil
}

// unary: "not" unary | "(" or ")" | check
func (p *parser) unary(depth int) (Check, error) {
	t, ok := p.peek()
	if !ok {
		return nil, fmt.Errorf("%w: the check string ends where a check is expected", ErrSyntax)
	}
	switch t.kind {
	case tokNot, tokOpen:
		if depth >= MaxDepth {
			return nil, fmt.Errorf("%w: parentheses and \"not\" nest deeper than %d", ErrSyntax, MaxDepth)
		}
		p.pos++
		if t.kind == tokNot {
			c, err := p.unary(depth + 1)
			if err != nil {
				return nil, err
			}
			return not{c}, nil
		}
		c, err := p.or(depth + 1)
		if err != nil {
			return nil, err
		}
		if t, ok := p.peek(); !ok || t.kind != tokClose {
			return nil, fmt.Errorf("%w: a \"(\" is not closed", ErrSyntax)
		}
		p.pos++
		return c, nil
	case tokCheck:
		p.pos++
		return parseCheck(t.text)
	}
	return nil, fmt.Errorf("%w: unexpected %s where a check is expected", ErrSyntax, t)
}

// parseCheck reads one check: @, !, or KIND:MATCH.
func parseCheck(text string) (Check, error) {
	switch text {
	case "@":
		return always{}, nil
	case "!":
		return never{}, nil
	}
	kind, match, ok := strings.Cut(text, ":")
	if !ok {
		return nil, fmt.Errorf("%w: %q is not a check (KIND:MATCH, @ or !)", ErrSyntax, text)
	}
	tmpl, err := parseTemplate(match)
	if err != nil {
		return nil, fmt.Errorf("%w: in %q: %v", ErrSyntax, text, err)
	}
	switch kind {
	case "rule":
		if !tmpl.literal() || match == "" {
			return nil, fmt.Errorf("%w: %q: a rule check names a rule", ErrSyntax, text)
		}
		return ruleCheck{name: match}, nil
	case "role":
		return roleCheck{role: tmpl}, nil
	case "http", "https":
		return nil, fmt.Errorf("%w: %q: remote (%s) checks are not supported", ErrSyntax, text, kind)
	case "":
		return nil, fmt.Errorf("%w: %q has no kind before the colon", ErrSyntax, text)
	}
	if lit, ok, err := parseLiteral(kind); err != nil {
		return nil, fmt.Errorf("%w: %q: %v", ErrSyntax, text, err)
	} else if ok {
		return literalCheck{literal: lit, match: tmpl}, nil
	}
	path := strings.Split(kind, ".")
	for _, seg := range path {
		if !isIdentifier(seg) {
			return nil, fmt.Errorf("%w: %q: %q is neither a literal nor a credential name", ErrSyntax, text, kind)
		}
	}
	return credCheck{path: path, match: tmpl}, nil
}

// parseLiteral reads what Python's ast.literal_eval would make of a check's
// kind, rendered as Python's str() would: a quoted string, True, False,
// None or an integer. ok is false for a name (a credential).
func parseLiteral(kind string) (lit string, ok bool, err error) {
	switch kind {
	case "True", "False", "None":
		return kind, true, nil
	}
	if q := kind[0]; q == '\'' || q == '"' {
		if len(kind) < 2 || kind[len(kind)-1] != q {
			return "", false, fmt.Errorf("unterminated quoted literal %s", kind)
		}
		body := kind[1 : len(kind)-1]
		if strings.ContainsAny(body, `\`+string(q)) {
			return "", false, fmt.Errorf("quoted literal %s has quotes or backslashes inside", kind)
		}
		return body, true, nil
	}
	if c := kind[0]; c == '-' || c == '+' || ('0' <= c && c <= '9') {
		n, perr := strconv.ParseInt(strings.ReplaceAll(kind, "_", ""), 10, 64)
		if perr != nil {
			return "", false, fmt.Errorf("%s is not a literal this policy language takes (quoted strings, True, False, None, integers)", kind)
		}
		return strconv.FormatInt(n, 10), true, nil
	}
	return "", false, nil
}

func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r == '_' || unicode.IsLetter(r):
		case i > 0 && (unicode.IsDigit(r) || r == '-'):
		default:
			return false
		}
	}
	return true
}

// template is the right side of a check: text with %(ATTR)s slots that
// the target fills, as Python's "%" operator does with a dict.
type template struct {
	parts []string // literal text, with attrs[i] between parts[i] and parts[i+1]
	attrs []string
}

func (t template) literal() bool { return len(t.attrs) == 0 }

// parseTemplate accepts %(NAME)s slots and %% escapes; any other "%"
// would raise in Python and is refused here.
func parseTemplate(s string) (template, error) {
	var t template
	var cur strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			cur.WriteByte(s[i])
			continue
		}
		rest := s[i+1:]
		switch {
		case strings.HasPrefix(rest, "%"):
			cur.WriteByte('%')
			i++
		case strings.HasPrefix(rest, "("):
			end := strings.Index(rest, ")")
			if end < 0 || end+1 >= len(rest) || rest[end+1] != 's' {
				return template{}, fmt.Errorf("a target attribute is written %%(NAME)s")
			}
			name := rest[1:end]
			if name == "" {
				return template{}, fmt.Errorf("%%()s names no target attribute")
			}
			t.parts = append(t.parts, cur.String())
			t.attrs = append(t.attrs, name)
			cur.Reset()
			i += end + 2
		default:
			return template{}, fmt.Errorf("a lone %% (write %%%% for a percent sign)")
		}
	}
	t.parts = append(t.parts, cur.String())
	return t, nil
}

// fill renders t with target's attributes; ok is false when one is
// missing (oslo.policy's KeyError: the check fails).
func (t template) fill(target Target) (string, bool) {
	if t.literal() {
		return t.parts[0], true
	}
	var b strings.Builder
	for i, p := range t.parts {
		b.WriteString(p)
		if i < len(t.attrs) {
			v, ok := target[t.attrs[i]]
			if !ok {
				return "", false
			}
			b.WriteString(v)
		}
	}
	return b.String(), true
}

func (t template) String() string {
	var b strings.Builder
	for i, p := range t.parts {
		b.WriteString(strings.ReplaceAll(p, "%", "%%"))
		if i < len(t.attrs) {
			b.WriteString("%(" + t.attrs[i] + ")s")
		}
	}
	return b.String()
}
