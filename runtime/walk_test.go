package runtime

import (
	"context"
	"strings"
	"testing"
	"time"
)

// A built-in that walks an array's length in Go cannot be interrupted: on a
// sparse array of 4e9 holes it would run for minutes past its operation's
// timeout, or allocate length × 16 bytes at once. Past MaxAllocBytes/16
// elements such a call throws a catchable RangeError instead; below it,
// the built-in answers as before.
func TestHugeWalksThrowACatchableRangeError(t *testing.T) {
	t.Parallel()
	huge := map[string]string{
		"indexOf":           "Array(4e9).indexOf(1)",
		"includes":          "Array(4e9).includes(1)",
		"lastIndexOf":       "Array(4e9).lastIndexOf(1)",
		"forEach":           "Array(4e9).forEach(x => x)",
		"map":               "Array(4e9).map(x => x)",
		"filter":            "Array(4e9).filter(x => x)",
		"some":              "Array(4e9).some(x => x)",
		"reduce":            "Array(4e9).reduce((a, x) => a, 0)",
		"reverse":           "{ const a = []; a.length = 4e9; a.reverse() }",
		"shift":             "{ const a = []; a.length = 4e9; a.shift() }",
		"slice":             "Array(4e9).slice()",
		"sort":              "Array(4e9).sort()",
		"toSorted":          "Array(4e9).toSorted()",
		"join (empty sep)":  `Array(4e9).join("")`,
		"concat":            "[].concat(Array(4e9))",
		"generic indexOf":   "Array.prototype.indexOf.call({length: 4e9}, 1)",
		"apply":             "Math.max.apply(null, {length: 4e9})",
		"Reflect.apply":     "Reflect.apply(Math.max, null, {length: 4e9})",
		"Reflect.construct": "Reflect.construct(Array, {length: 4e9})",
		"spread":            "[...Array(4e9)]",
		"spread arguments":  "Math.max(...Array(4e9))",
		"Array.from":        "Array.from(Array(4e9))",
		"new Set":           "new Set(Array(4e9))",
		"for of keys":       "for (const k of Array(4e9).keys()) {}",
		"split per char":    `"x".repeat(1e6).split("")`,
		"split on a RegExp": `"x".repeat(1e6).split(/(?:)/)`,
	}
	e := newEngine(t, Config{NoPrewarm: true, MaxAllocBytes: 8 << 20}) // walks of at most 512 Ki elements
	for name, expr := range huge {
		t.Run(name, func(t *testing.T) {
			src := "function handle() {\n  try { " + expr + "; return 'no error' } catch (e) { return e.name + ': ' + e.message }\n}"
			p := newProject(t, "p", op{name: "op", src: src, timeout: 2 * time.Second})
			res := runBounded(t, e, context.Background(), Invocation{Project: p, Operation: "op"})
			if res.Err != nil {
				t.Fatalf("run failed: %v", res.Err)
			}
			got := string(res.JSON)
			if !strings.HasPrefix(got, `"RangeError: `) || !strings.Contains(got, "elements a single call may walk") {
				t.Fatalf("got %s; want a RangeError saying the walk is too long", got)
			}
		})
	}
}

func TestOrdinaryWalksAreUnchanged(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{NoPrewarm: true})
	src := `function handle() {
  const a = [3, 1, 2];
  const sparse = []; sparse.length = 1000; sparse[500] = 7;
  return [
    a.indexOf(2), a.includes(1), a.map(x => x * 2), a.filter(x => x > 1), a.slice(1), a.toSorted(),
    [...a].sort(), [...a].reverse(), a.concat([4], 5), a.reduce((s, x) => s + x, 0),
    sparse.indexOf(7), sparse.join("").length, Math.max.apply(null, a), Reflect.apply(Math.min, null, a),
    Reflect.construct(Array, [1, 2]).length, Array.prototype.indexOf.call({length: 2, 1: "x"}, "x"),
    Array.prototype.map.name, Array.prototype.map.length, Function.prototype.apply.length,
    [...a], Math.max(...a), Array.from(a.keys()), new Set(a).size, Array.prototype[Symbol.iterator] === Array.prototype.values,
    "a,b".split(","), "ab".split(""), "a1b".split(/\d/), "x".repeat(1e7).split("x", 2), "x".repeat(1e7).split(",").length,
  ];
}`
	res := runOne(t, e, src, nil)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	want := `[2,true,[6,2,4],[3,2],[1,2],[1,2,3],[1,2,3],[2,1,3],[3,1,2,4,5],6,500,1,3,1,2,1,"map",1,2,[3,1,2],3,[0,1,2],3,true,["a","b"],["a","b"],["a","b"],["",""],1]`
	if got := string(res.JSON); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// replaceAll with a string pattern builds its whole result at once in Go: a
// long replacement multiplied by many occurrences is refused before it is
// built; a replacement that finds few occurrences is not.
func TestReplaceAllIsBounded(t *testing.T) {
	t.Parallel()
	e := newEngine(t, Config{NoPrewarm: true, MaxAllocBytes: 8 << 20})
	src := `function handle() {
  let caught;
  try { "x".repeat(1e5).replaceAll("x", "y".repeat(100)) } catch (e) { caught = e.name + ": " + e.message }
  return [caught, "a-b-c".replaceAll("-", "+"), "x".repeat(1e5).replaceAll("z", "y".repeat(100)).length,
    "ab".replaceAll("", "-"), "ab".replaceAll("a", "$&$&"), "aXa".replaceAll(/a/g, "b")];
}`
	res := runOne(t, e, src, nil)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	want := `["RangeError: String.prototype.replaceAll result of 20200000 bytes is larger than the 8 MiB a single allocation may take","a+b+c",100000,"-a-b-","aab","bXb"]`
	if got := string(res.JSON); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}
