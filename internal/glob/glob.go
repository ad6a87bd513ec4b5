// Package glob matches names against patterns whose "*" matches any run of
// characters (none included) and whose other characters match themselves:
// the one wildcard rule of API token scopes, destination patterns and
// broker permissions.
package glob

// Match reports whether name matches pattern. It backtracks only to the
// last "*", so it takes time proportional to len(pattern)×len(name) at
// worst, and allocates nothing.
func Match(pattern, name string) bool {
	p, n := 0, 0
	star, mark := -1, 0 // the last "*" seen in pattern, and where in name its match ends so far
	for n < len(name) {
		switch {
		case p < len(pattern) && pattern[p] == '*':
			star, mark = p, n
			p++
		case p < len(pattern) && pattern[p] == name[n]:
			p++
			n++
		case star >= 0:
			// Let the last "*" take one more byte and retry what follows it.
			mark++
			p, n = star+1, mark
		default:
			return false
		}
	}
	for p < len(pattern) && pattern[p] == '*' {
		p++
	}
	return p == len(pattern)
}
