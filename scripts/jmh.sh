#!/usr/bin/env bash
# Runs the JMH kernel microbenchmarks (src/test/java/**/*Bench.java). Extra arguments go to JMH, e.g.
#   scripts/jmh.sh KernelBench -p dtype=Q8_0 -p rows=1        (a subset)
#   scripts/jmh.sh -l                                         (list)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/java-home.sh
./mvnw -B -q -ntp test-compile dependency:build-classpath -Dmdep.outputFile=target/jmh.classpath -Dmdep.includeScope=test >&2
exec "$JAVA_HOME/bin/java" --add-modules jdk.incubator.vector --enable-native-access=ALL-UNNAMED \
  -cp "target/test-classes:target/classes:$(cat target/jmh.classpath)" org.openjdk.jmh.Main "$@"
