package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// activeMQHome is where the Debian package `activemq` installs ActiveMQ 5.17.
const activeMQHome = "/usr/share/activemq"

// ActiveMQ returns the binary's shared ActiveMQ 5.17 broker, starting it on
// first use (about 3–15 s). Tests sharing it use unique destination names; a
// test that restarts or kills it must not run in parallel with others using it.
func ActiveMQ(t testing.TB) *Broker {
	t.Helper()
	return sharedBrokers.activemq.get(t, "ActiveMQ", StartActiveMQ)
}

// StartActiveMQ starts a private ActiveMQ broker: one STOMP connector on a
// free loopback port, KahaDB in its own folder, no JMX, web console,
// advisories, scheduler or other transports, no authentication (any login
// is accepted). It runs java directly (not /usr/bin/activemq, whose options
// file overrides ACTIVEMQ_BASE) as user activemq when we are root. StopAll
// stops it and removes its data at exit.
func StartActiveMQ() (*Broker, error) {
	jar := filepath.Join(activeMQHome, "bin", "activemq.jar")
	if _, err := os.Stat(jar); err != nil {
		return nil, fmt.Errorf("ActiveMQ is not installed: %w", err)
	}
	java, err := exec.LookPath("java")
	if err != nil {
		return nil, fmt.Errorf("ActiveMQ needs java: %w", err)
	}
	b, port, err := newBroker(KindActiveMQ)
	if err != nil {
		return nil, err
	}
	b.Login, b.Passcode = "admin", "admin"
	conf, data, tmp := filepath.Join(b.Dir, "conf"), filepath.Join(b.Dir, "data"), filepath.Join(b.Dir, "tmp")
	for _, d := range []string{conf, data, tmp} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("start ActiveMQ: %w", err)
		}
	}
	files := map[string]string{
		"activemq.xml":      fmt.Sprintf(activeMQXML, data, data, port),
		"log4j.properties":  activeMQLog4j,
		"log4j2.properties": activeMQLog4j2,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(conf, name), []byte(text), 0o644); err != nil {
			return nil, fmt.Errorf("start ActiveMQ: %w", err)
		}
	}
	b.launch = func() (*exec.Cmd, error) {
		cmd := exec.Command(java,
			"-Xms128m", "-Xmx512m",
			"-Djava.awt.headless=true",
			"-Djava.io.tmpdir="+tmp,
			"-Dactivemq.classpath="+conf,
			"-Dactivemq.home="+activeMQHome,
			"-Dactivemq.base="+b.Dir,
			"-Dactivemq.conf="+conf,
			"-Dactivemq.data="+data,
			"--add-reads=java.xml=java.logging",
			"--add-opens", "java.base/java.security=ALL-UNNAMED",
			"--add-opens", "java.base/java.net=ALL-UNNAMED",
			"--add-opens", "java.base/java.lang=ALL-UNNAMED",
			"--add-opens", "java.base/java.util=ALL-UNNAMED",
			"--add-opens", "java.base/java.util.concurrent=ALL-UNNAMED",
			"-jar", jar, "start", "xbean:file:"+filepath.Join(conf, "activemq.xml"))
		cmd.Dir = b.Dir
		cmd.Env = append(os.Environ(), "ACTIVEMQ_HOME="+activeMQHome, "ACTIVEMQ_BASE="+b.Dir)
		return cmd, runAs(cmd, "activemq", b.Dir)
	}
	if err := b.Start(); err != nil {
		return nil, err
	}
	return b, nil
}

// activeMQXML takes the data directory (twice) and the STOMP port.
const activeMQXML = `<beans xmlns="http://www.springframework.org/schema/beans"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
  xsi:schemaLocation="http://www.springframework.org/schema/beans http://www.springframework.org/schema/beans/spring-beans-2.0.xsd
  http://activemq.apache.org/schema/core http://activemq.apache.org/schema/core/activemq-core.xsd">
  <broker xmlns="http://activemq.apache.org/schema/core" brokerName="opsrunner-test"
          useJmx="false" advisorySupport="false" schedulerSupport="false"
          dataDirectory="%s">
    <persistenceAdapter>
      <kahaDB directory="%s/kahadb"/>
    </persistenceAdapter>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:%d"/>
    </transportConnectors>
  </broker>
</beans>
`

const activeMQLog4j = `log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=%d %-5p %c - %m%n
log4j.logger.org.apache.activemq.broker.BrokerService=INFO
`

const activeMQLog4j2 = `rootLogger.level=WARN
rootLogger.appenderRef.console.ref=Console
appender.console.type=Console
appender.console.name=Console
appender.console.layout.type=PatternLayout
appender.console.layout.pattern=%d %5p | %m%n
`
