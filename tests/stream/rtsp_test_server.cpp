// A camera for the RTSP test: serves one JPEG picture as a 10 fps video at
// rtsp://127.0.0.1:PORT/cam with GStreamer's rtsp-server library (Debian's
// libgstrtspserver-1.0), H.264 when x264enc is installed (gstreamer1.0-plugins-ugly),
// else Motion JPEG over RTP. The test kills it with SIGKILL and starts it again.
//
//   rtsp_test_server PORT PICTURE.jpg
#include <cstdio>
#include <string>

#include <gst/gst.h>
#include <gst/rtsp-server/rtsp-server.h>

int main(int argc, char** argv) {
  gst_init(&argc, &argv);
  if (argc != 3) {
    std::fprintf(stderr, "usage: rtsp_test_server PORT PICTURE.jpg\n");
    return 2;
  }
  const std::string port = argv[1], picture = argv[2];
  GstElementFactory* x264 = gst_element_factory_find("x264enc");
  const bool h264 = x264 != nullptr;
  if (x264 != nullptr) gst_object_unref(x264);
  // One still picture, looped: a camera watching a doorway with a face in it. A key frame
  // every 10 frames (1 s), so a client that connects or reconnects decodes within a second.
  const std::string source = "multifilesrc location=\"" + picture + "\" loop=true caps=image/jpeg,framerate=10/1 ";
  const std::string launch =
      h264 ? "( " + source +
                 "! jpegdec ! videoconvert ! video/x-raw,format=I420 ! "
                 "x264enc tune=zerolatency speed-preset=ultrafast key-int-max=10 ! rtph264pay name=pay0 pt=96 )"
           : "( " + source + "! jpegparse ! rtpjpegpay name=pay0 pt=26 )";

  GstRTSPServer* server = gst_rtsp_server_new();
  gst_rtsp_server_set_address(server, "127.0.0.1");
  gst_rtsp_server_set_service(server, port.c_str());
  GstRTSPMountPoints* mounts = gst_rtsp_server_get_mount_points(server);
  GstRTSPMediaFactory* factory = gst_rtsp_media_factory_new();
  gst_rtsp_media_factory_set_launch(factory, launch.c_str());
  gst_rtsp_media_factory_set_shared(factory, TRUE);  // one pipeline for every client
  gst_rtsp_mount_points_add_factory(mounts, "/cam", factory);
  g_object_unref(mounts);
  if (gst_rtsp_server_attach(server, nullptr) == 0) {
    std::fprintf(stderr, "rtsp_test_server: cannot listen on port %s\n", port.c_str());
    return 1;
  }
  std::printf("rtsp://127.0.0.1:%s/cam (%s)\n", port.c_str(), h264 ? "H.264" : "Motion JPEG");
  std::fflush(stdout);
  GMainLoop* loop = g_main_loop_new(nullptr, FALSE);
  g_main_loop_run(loop);  // until killed
  return 0;
}
