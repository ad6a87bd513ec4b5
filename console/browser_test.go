package console_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/opsrunner/opsrunner/internal/testenv"
)

// browser is one headless Chromium tab for one test. It records what the
// page reports as broken (uncaught exceptions, console errors other than
// failed requests, and Content-Security-Policy refusals) so that each step
// can fail on them.
type browser struct {
	t   *testing.T
	ctx context.Context
	log *pageLog
}

// pageLog collects what the page reports as broken.
type pageLog struct {
	mu      sync.Mutex
	reports []string
}

// in returns the same tab for a subtest: failures go to t.
func (b *browser) in(t *testing.T) *browser {
	return &browser{t: t, ctx: b.ctx, log: b.log}
}

// stepTimeout bounds one browser step so that a missing element fails the
// test, naming the step, instead of hanging it.
const stepTimeout = time.Minute

// newBrowser starts headless Chromium (skipped without it locally, a
// failure under CI=true) at a laptop's window size.
func newBrowser(t *testing.T) *browser {
	t.Helper()
	path, err := chromiumPath()
	if err != nil {
		testenv.Unavailable(t, "chromium", err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // tests run as root in containers
		chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	b := &browser{t: t, ctx: ctx, log: &pageLog{}}
	messages := chromedp.Console(ctx)
	if err := chromedp.Do(ctx); err != nil { // starts the browser and its tab
		t.Fatalf("start chromium: %v", err)
	}
	go func() { // ends when ctx is cancelled at cleanup
		for m, err := range messages {
			if err != nil {
				return
			}
			if m.IsException() || m.Source == "security" || (m.Type == chromedp.ConsoleError && m.Source != "network") {
				b.log.mu.Lock()
				b.log.reports = append(b.log.reports, m.String()+" at "+m.URL)
				b.log.mu.Unlock()
			}
		}
	}()
	return b
}

func chromiumPath() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no chromium, chromium-browser or google-chrome on PATH")
}

// do runs the steps of what, failing the test when one fails or the page
// reported a problem.
func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v%s", what, err, b.problems())
	}
	b.checkPage(what)
}

// text returns the text of the first element sel matches.
func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v%s", sel, err, b.problems())
	}
	return s
}

// eval evaluates a JavaScript expression in the page.
func eval[T any](b *browser, expr string) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v%s", expr, err, b.problems())
	}
	return v
}

// waitFor waits until a JavaScript condition holds in the page.
func (b *browser) waitFor(what, cond string) {
	b.t.Helper()
	b.do("wait for "+what, func(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Poll[bool](cond, chromedp.WithPollingInterval(50*time.Millisecond), chromedp.WithPollingTimeout(stepTimeout))(ctx, t)
		return chromedp.Void{}, err
	})
}

func (b *browser) problems() string {
	b.log.mu.Lock()
	defer b.log.mu.Unlock()
	if len(b.log.reports) == 0 {
		return ""
	}
	return "\npage reported:\n  " + strings.Join(b.log.reports, "\n  ")
}

func (b *browser) checkPage(what string) {
	b.t.Helper()
	if p := b.problems(); p != "" {
		b.t.Fatalf("after %s:%s", what, p)
	}
}

// screenshot writes the whole page as name.png to $OPSRUNNER_ARTIFACTS
// (or the test's temporary folder) and returns the PNG.
func (b *browser) screenshot(name string) []byte {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	dir := os.Getenv("OPSRUNNER_ARTIFACTS")
	if dir == "" {
		dir = b.t.TempDir()
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatalf("artifacts folder: %v", err)
	}
	p := filepath.Join(dir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Fatalf("write screenshot: %v", err)
	}
	b.t.Logf("screenshot %s", p)
	return png
}
