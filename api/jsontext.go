package api

// hasLoneSurrogate reports whether a JSON text holds a \u escape of a
// UTF-16 surrogate that is not half of a pair (a high one followed by a
// \u escape of a low one). It reads only string contents and leaves
// malformed JSON to the decoder.
func hasLoneSurrogate(body []byte) bool {
	inString := false
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !inString {
			inString = c == '"'
			continue
		}
		switch c {
		case '"':
			inString = false
		case '\\':
			if i+1 >= len(body) {
				return false
			}
			if body[i+1] != 'u' {
				i++ // the escaped byte, which may be a quote
				continue
			}
			r, ok := hexEscape(body, i)
			if !ok {
				return false
			}
			i += 5
			switch {
			case r >= 0xdc00 && r <= 0xdfff:
				return true
			case r >= 0xd800 && r <= 0xdbff:
				low, ok := hexEscape(body, i+1)
				if !ok || low < 0xdc00 || low > 0xdfff {
					return true
				}
				i += 6
			}
		}
	}
	return false
}

// hexEscape decodes the \uXXXX escape at body[i:], if there is one.
func hexEscape(body []byte, i int) (rune, bool) {
	if i+6 > len(body) || body[i] != '\\' || body[i+1] != 'u' {
		return 0, false
	}
	var r rune
	for _, h := range body[i+2 : i+6] {
		switch {
		case h >= '0' && h <= '9':
			r = r<<4 | rune(h-'0')
		case h >= 'a' && h <= 'f':
			r = r<<4 | rune(h-'a'+10)
		case h >= 'A' && h <= 'F':
			r = r<<4 | rune(h-'A'+10)
		default:
			return 0, false
		}
	}
	return r, true
}
