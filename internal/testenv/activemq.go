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
// free loopback port and one STOMP+SSL connector, TLSAddr, that requires a
// client certificate (Broker.TLS has the files to reach it), KahaDB in its
// own folder, no JMX, web console,
// advisories, scheduler or other transports, no authentication (any login
// is accepted). It runs java directly (not /usr/bin/activemq, whose options
// file overrides ACTIVEMQ_BASE) as user activemq when we are root. StopAll
// stops it and removes its data at exit. A start that finds its port
// taken by another process is tried again on new ports (see onFreePorts).
func StartActiveMQ() (*Broker, error) { return onFreePorts(startActiveMQ) }

func startActiveMQ() (*Broker, error) {
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
	tlsPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	keyStore, trustStore, err := activeMQKeyStores(b)
	if err != nil {
		return nil, err
	}
	b.TLSAddr = fmt.Sprintf("127.0.0.1:%d", tlsPort)
	files := map[string]string{
		"activemq.xml":      fmt.Sprintf(activeMQXML, data, data, keyStore, trustStore, port, tlsPort),
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

// activeMQKeyStoreSecret guards the test broker's PKCS12 key and trust
// stores (they hold nothing but test keys); activeMQXML repeats it.
const activeMQKeyStoreSecret = "opsrunner"

// activeMQKeyStores writes b's TLS files: a test PKI whose CA ActiveMQ
// trusts for client certificates (trust.p12), and the broker's own
// self-signed certificate for 127.0.0.1 and localhost, made with keytool
// (broker.p12; Go cannot write PKCS12), which becomes b.TLS.CAFile: what a
// client must trust. It returns the key store and trust store paths.
func activeMQKeyStores(b *Broker) (keyStore, trustStore string, err error) {
	dir := filepath.Join(b.Dir, "tls")
	pki, err := WriteTestPKI(dir)
	if err != nil {
		return "", "", err
	}
	keytool, err := exec.LookPath("keytool")
	if err != nil {
		return "", "", fmt.Errorf("ActiveMQ's TLS connector needs keytool (from java): %w", err)
	}
	keyStore, trustStore = filepath.Join(dir, "broker.p12"), filepath.Join(dir, "trust.p12")
	brokerCert := filepath.Join(dir, "broker.pem")
	pass := activeMQKeyStoreSecret
	for _, args := range [][]string{
		{"-genkeypair", "-alias", "broker", "-keyalg", "EC", "-groupname", "secp256r1", "-dname", "CN=localhost",
			"-ext", "SAN=ip:127.0.0.1,dns:localhost", "-validity", "2", "-keystore", keyStore, "-storetype", "PKCS12", "-storepass", pass, "-keypass", pass},
		{"-exportcert", "-rfc", "-alias", "broker", "-keystore", keyStore, "-storetype", "PKCS12", "-storepass", pass, "-file", brokerCert},
		{"-importcert", "-noprompt", "-alias", "clients", "-file", pki.CAFile, "-keystore", trustStore, "-storetype", "PKCS12", "-storepass", pass},
	} {
		if out, err := exec.Command(keytool, args...).CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("keytool %s: %v\n%s", args[0], err, out)
		}
	}
	b.TLS = TLSFiles{CAFile: brokerCert, ServerCertFile: brokerCert, ClientCertFile: pki.ClientCertFile, ClientKey: pki.ClientKey}
	return keyStore, trustStore, nil
}

// activeMQXML takes the data directory (twice), the key store and the trust
// store, the STOMP port and the STOMP+SSL port.
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
    <sslContext>
      <sslContext keyStore="file:%s" keyStorePassword="opsrunner" keyStoreType="PKCS12"
                  trustStore="file:%s" trustStorePassword="opsrunner" trustStoreType="PKCS12"/>
    </sslContext>
    <transportConnectors>
      <transportConnector name="stomp" uri="stomp://127.0.0.1:%d"/>
      <transportConnector name="stomp+ssl" uri="stomp+ssl://127.0.0.1:%d?needClientAuth=true"/>
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
