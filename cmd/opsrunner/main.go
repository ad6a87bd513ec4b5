// Command opsrunner is the agent (serve), the embedded broker on its own
// (broker), a client of the agent's HTTP API (deploy, invoke, runs,
// listeners, schedules, members, projects, deadletters, scripts, secrets)
// and of its broker (send), and a project's toolbox (init, types).
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/opsrunner/opsrunner/agent"
	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// An agent's heartbeat and /api/v1/info name this build too.
	agent.Version = thisBuild().String()
	root := newRoot(os.Getenv)
	root.SetContext(ctx)
	if err := root.Execute(); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			os.Exit(ee.code)
		}
		fmt.Fprintln(os.Stderr, "opsrunner:", err)
		os.Exit(1)
	}
}

// exitError carries a specific exit code whose message was already printed.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func newRoot(getenv func(string) string) *cobra.Command {
	root := &cobra.Command{
		Use:   "opsrunner",
		Short: "Run JavaScript operations on webhooks and broker messages",
		Long: `opsrunner runs small JavaScript operations when events arrive: an HTTP
webhook, or a message on a STOMP queue or topic, with transacted message
handling (commit, rollback, ack timeout, redelivery, dead-letter queue).

Start an agent with "opsrunner serve"; the other commands talk to it over
HTTP (--server, or OPSRUNNER_SERVER; default http://127.0.0.1:8080).`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	server := getenv("OPSRUNNER_SERVER")
	if server == "" {
		server = "http://127.0.0.1:8080"
	}
	token := getenv("OPSRUNNER_TOKEN")
	root.PersistentFlags().String("server", server, "agent `URL` (env OPSRUNNER_SERVER)")
	root.PersistentFlags().String("token", token, "bearer `TOKEN` for management calls (env OPSRUNNER_TOKEN)")
	addClientFlags(root, getenv)
	root.AddCommand(
		newServe(getenv),
		newBroker(getenv),
		newDeploy(),
		newInvoke(),
		newRuns(),
		newListeners(),
		newMembers(),
		newSend(getenv),
		newSecrets(),
		newProjects(),
		newDeadLetters(),
		newScripts(),
		newSchedules(),
		newVersion(thisBuild()),
		newTypes(),
		newInit(),
	)
	return root
}
