package scripts

// Scripts are compiled inside a function wrapper so that every run evaluates
// the module afresh in its own scope (no state leaks between runs of a pooled
// runtime). The wrapper sits on the script's first line, so line numbers are
// the user's; columns on line 1 are shifted by len(WrapPrefix).
//
// Evaluating a wrapped program yields a function
//
//	function(exports, module) -> {handle, filter}
//
// where handle and filter are the script's own top-level functions of those
// names, if any. The runtime prefers module.exports (a function, or an object
// with handle), then exports.handle, then the returned handle.
const (
	WrapPrefix = "(function(exports, module) {"
	WrapSuffix = "\n;return {handle: typeof handle === \"function\" ? handle : undefined, filter: typeof filter === \"function\" ? filter : undefined};\n})"
)

// Wrap returns src inside the module wrapper.
func Wrap(src string) string { return WrapPrefix + src + WrapSuffix }

// UserPosition maps a position in the wrapped source to the user's file.
func UserPosition(line, column int) (int, int) {
	if line == 1 && column > len(WrapPrefix) {
		column -= len(WrapPrefix)
	}
	return line, column
}
