# Sourced by ./vlm4j, scripts/test.sh and .ci/run: points JAVA_HOME at a JDK 25 (or newer).
_vlm4j_java_ok() { [ -x "$1/bin/javac" ] && "$1/bin/java" -version 2>&1 | head -1 | grep -Eq '"(2[5-9]|[3-9][0-9])'; }
if [ -n "${JAVA_HOME:-}" ] && _vlm4j_java_ok "$JAVA_HOME"; then :
else
  for c in /usr/lib/jvm/temurin-25-jdk-amd64 /usr/lib/jvm/temurin-25* /usr/lib/jvm/*-25* /usr/lib/jvm/*; do
    if _vlm4j_java_ok "$c"; then export JAVA_HOME="$c"; break; fi
  done
fi
if [ -z "${JAVA_HOME:-}" ] || ! _vlm4j_java_ok "$JAVA_HOME"; then
  echo "vlm4j: no JDK 25 found. Install one (e.g. Temurin 25) and set JAVA_HOME to it." >&2
  exit 1
fi
export PATH="$JAVA_HOME/bin:$PATH"
