package runtime

import (
	"sync"
	"time"

	"github.com/dlclark/regexp2/v2"
)

// maxRegexpMatch bounds one regular-expression match that backtracks.
// goja runs patterns RE2 cannot (backreferences, lookarounds) on regexp2,
// in Go code no interrupt reaches: /(a+)+\1c/ on 32 a's (2^32 ways to
// try) held its worker long past a 500ms operation timeout. regexp2 gives
// up a match after its MatchTimeout, and goja then answers "no match";
// when the operation's own limit has passed meanwhile, its interrupt fails
// the run at once after.
const maxRegexpMatch = 10 * time.Second

var regexpTimeoutOnce sync.Once

// boundRegexpMatches sets regexp2's default match timeout, which every
// pattern goja compiles afterwards takes. It is process-wide (regexp2 has
// no other knob goja passes on), set once before the first engine runs.
func boundRegexpMatches() {
	regexpTimeoutOnce.Do(func() { regexp2.DefaultMatchTimeout = maxRegexpMatch })
}
