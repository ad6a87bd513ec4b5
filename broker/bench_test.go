package broker

import (
	"testing"
)

// BenchmarkPersistentSendConsume sends b.N persistent 200-byte messages
// without receipts (the last one with a receipt, so all are durable), then
// consumes them with client-individual acknowledgment, and reports each leg
// in msg/s. The figure is -benchtime=20000x.
func BenchmarkPersistentSendConsume(b *testing.B) {
	br := startBroker(b, Config{DataDir: b.TempDir()})
	res, err := SendConsume(br.Addr().String(), "/queue/bench", b.N)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(res.SendRate, "send-msg/s")
	b.ReportMetric(res.ConsumeRate, "consume-msg/s")
}

func TestSendConsumeHelper(t *testing.T) {
	t.Parallel()
	br := startBroker(t, Config{DataDir: t.TempDir()})
	res, err := SendConsume(br.Addr().String(), "/queue/helper", 2000)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("send %.0f msg/s, consume %.0f msg/s", res.SendRate, res.ConsumeRate)
	if st, _ := br.QueueStats("/queue/helper"); st.Pending != 0 || st.InFlight != 0 {
		t.Errorf("left %+v", st)
	}
}
