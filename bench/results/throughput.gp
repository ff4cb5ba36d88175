# Rendered by bench/run, in this folder: gnuplot throughput.gp
set terminal pngcairo size 1400,600 font ",10"
set output "throughput.png"
set title "Throughput relative to glibc (median ops/sec; higher is better)"
set ylabel "ratio to glibc (log scale)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set xtics rotate by -30 scale 0
set grid ytics
set key outside right top
set logscale y
set datafile missing "NaN"
plot for [i=2:6] "throughput.dat" using i:xtic(1) title columnheader(i)
