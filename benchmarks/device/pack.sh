#!/usr/bin/env bash
# Pack what benchmarks/device/cpu16.sh needs on a GPU machine with Python 3.12 and no TensorFlow or network:
# the tensorflow-cpu wheel without its C++ headers, the wheels that machine lacks, numpy as a fallback; split into
# parts that fit the device tool's 64 MiB a call (.tfa/part.0 ... .tfe/part.4, each carried by one call that
# copies it to /tmp/parts there). Run from the repository root; needs pip's registry and zip.
set -eu
W=$(mktemp -d)
dl() { python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 -d "$@"; }
dl "$W/tf" tensorflow-cpu==2.21.0
dl "$W/b" alembic==1.20.1 astunparse==1.6.3 colorlog==6.12.0 croniter==7.0.0 gast==0.7.0 google-crc32c==1.9.0 \
  google-pasta==0.2.0 grpcio==1.85.3 keras==3.15.1 Mako==1.4.3 ml_dtypes==0.7.0 namex==0.1.0 optree==0.20.0 \
  optuna==5.1.0 protobuf==7.36.2 python-crontab==3.4.0 simpy==4.1.2 SQLAlchemy==2.1.9 termcolor==3.3.0 \
  tensorflow-serving-api==2.21.0 flatbuffers==25.12.19 typer==0.29.2 rich==15.0.0 \
  pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
dl "$W/b/np" numpy==2.4.6
mv "$W"/tf/tensorflow_cpu-*.whl "$W/b/tensorflow_cpu.zip"
zip -q -d "$W/b/tensorflow_cpu.zip" 'tensorflow/include/*'  # 33 MB of C++ headers nothing here includes
(cd "$W/b" && tar -cf "$W/bundle.tar" ./*.zip ./*.whl np)
size=$(stat -c %s "$W/bundle.tar")
split -b $(( (size + 4) / 5 )) -d -a 1 "$W/bundle.tar" "$W/part."
for i in 0 1 2 3 4; do
  d=.tf$(echo abcde | cut -c$((i + 1)))
  grep -qx "/$d/" .git/info/exclude || echo "/$d/" >>.git/info/exclude
  mkdir -p "$d" && mv "$W/part.$i" "$d/part.$i"
done
md5sum "$W/bundle.tar"
rm -rf "$W"
