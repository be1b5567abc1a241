// Time ImageJ 1.53t Analyze Particles inside the macro (JVM start and file opening excluded).
// Arg: "in.tif,repeats". Prints "particles=<n> best_s=<seconds>" to stdout.
args = split(getArgument(), ",");
input = args[0]; repeats = 3;
if (args.length > 1) repeats = parseInt(args[1]);
setBatchMode(true);
setOption("BlackBackground", true);
open(input);
setThreshold(1, 255); run("Convert to Mask");
run("Set Measurements...", "area centroid perimeter fit shape feret's redirect=None decimal=6");
best = 1e30;
for (i = 0; i < repeats; i++) {
    t0 = getTime();
    run("Analyze Particles...", "size=0-Infinity circularity=0.00-1.00 show=Nothing display clear");
    dt = (getTime() - t0) / 1000;
    if (dt < best) best = dt;
}
print("particles=" + nResults + " best_s=" + best);
close("*");
